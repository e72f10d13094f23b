"""A healthy service on a host starved of CPU is still healthy: real gunicorn, the real probe, a real CPU quota.

Session 5's 50-host audit under load 45 (2 cores) found 14 healthy hosts "degraded at the voice layer": the simulated
call ran past its fixed 4 s bound and the doctor took its own deadline for a flood of the app's frames. Here the app,
the probe and two busy neighbours share 5% of one CPU (a cgroup's cpu quota, as a container's CPU limit or a unit's
CPUQuota= sets it), so the call cannot end within the bounds of an idle host - and the host's run queue does not show
why: the doctor reads the quota's throttled periods in the app's cgroup (probes/cpu_quota.py).
(At 2% a /healthz GET alone now and then took longer than its 3 s: a service that starved is down, not this test's case.)
"""

import json
import os
import subprocess
import time

import jsonschema
import psutil
import pytest

from doctor_run import DEMO_APP, PYTHON, ROOT, schema
from gunicorn_service import GunicornService, free_port, stop_popen


V1 = "/sys/fs/cgroup/cpu"          # cgroup v1's cpu controller
V2 = "/sys/fs/cgroup"              # the unified hierarchy, when it offers cpu to its children
QUOTA_US, PERIOD_US = 5000, 100000
NEIGHBOURS = 2

PROBE = r'''
import json, os, sys
import psutil
sys.path.insert(0, sys.argv[1])
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import host
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import verdict
with open(sys.argv[3], "w") as f:   # into the quota once imported: the probe, not the interpreter's start, is starved
    f.write(str(os.getpid()))
facts = host.probe_host(psutil, json.loads(sys.argv[2]), ["healthz", "voice"])
print(json.dumps({"report": verdict.judge(facts, "starved"), "voice": facts.get("voice"),
                  "late": facts.get("ran_out_of_time"), "timings": facts.get("timings")}))
'''


class Starved(object):
    """A cgroup whose processes share QUOTA_US per PERIOD_US of one CPU (v1 cpu.cfs_quota_us or v2 cpu.max)."""

    def __init__(self):
        if os.access(os.path.join(V1, "cpu.cfs_quota_us"), os.W_OK):
            self.path, self.v2 = os.path.join(V1, "doctor-starved-%d" % os.getpid()), False
        elif "cpu" in open(os.path.join(V2, "cgroup.subtree_control")).read().split() and os.access(V2, os.W_OK):
            self.path, self.v2 = os.path.join(V2, "doctor-starved-%d" % os.getpid()), True
        else:
            raise OSError("no writable cgroup cpu controller")
        os.mkdir(self.path)
        if self.v2:
            self._write("cpu.max", "%d %d" % (QUOTA_US, PERIOD_US))
        else:
            self._write("cpu.cfs_period_us", str(PERIOD_US))
            self._write("cpu.cfs_quota_us", str(QUOTA_US))

    def _write(self, name, value):
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def add(self, pid):
        self._write("cgroup.procs", str(pid))

    def remove(self):
        """Every process still in it back to the parent cgroup, then the cgroup gone."""
        with open(os.path.join(self.path, "cgroup.procs")) as f:
            pids = f.read().split()
        for pid in pids:
            with open(os.path.join(os.path.dirname(self.path), "cgroup.procs"), "w") as f:
                f.write(pid)
        os.rmdir(self.path)


@pytest.fixture
def starved():
    if os.geteuid() != 0:
        pytest.skip("a CPU quota needs root (a cgroup)")
    try:
        cgroup = Starved()
    except OSError as e:
        pytest.skip("cannot make a cgroup with a CPU quota: %s" % e)
    # Busy neighbours in the same quota: the host's other work (on the bench, the other hosts' probes).
    neighbours = [subprocess.Popen([PYTHON, "-c", "while True: pass"]) for dummy in range(NEIGHBOURS)]
    try:
        for neighbour in neighbours:
            cgroup.add(neighbour.pid)
        yield cgroup
    finally:
        for neighbour in neighbours:
            stop_popen(neighbour, [], grace=1)
        cgroup.remove()


def test_a_healthy_service_on_a_starved_host_is_healthy(tmp_path, starved):
    port = free_port()
    log = tmp_path / "gunicorn.log"
    service = GunicornService(DEMO_APP, "AgentLocator.main:app", log, bind="0.0.0.0:%d" % port,
                              env={"PORT": str(port)}, python=PYTHON)
    service.start()
    try:
        service.wait_ready()
        procs = [psutil.Process(service.pid)] + psutil.Process(service.pid).children()
        time.sleep(max(0.0, max(p.create_time() for p in procs) + 1.2 - time.time()))   # settled: older than the window
        for proc in procs:
            starved.add(proc.pid)
        # The voice layer (and /healthz, its evidence) alone: no dry import in the same quota (test_diagnose_settled.py).
        params = {"app": "AgentLocator.main:app", "chdir": str(DEMO_APP), "python": PYTHON, "port": str(port),
                  "log_file": str(log), "stability_window": 1, "voice_pace": 4, "dry_import": False}
        done = subprocess.run([PYTHON, "-c", PROBE, str(ROOT / ".collections"), json.dumps(params),
                               os.path.join(starved.path, "cgroup.procs")], capture_output=True, text=True, timeout=240,
                              check=False)
    finally:
        service.stop(grace=5)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    report, voice = found["report"], found["voice"]
    jsonschema.validate(report, schema())
    assert voice is not None, (found["late"], found["timings"], report["causes"])
    # The load was real: the call held the worker over twice as long as on an idle host (under half a second there).
    assert voice["websocket"]["held_seconds"] > 1.0, voice["websocket"]
    assert report["verdict"] == "healthy", (report["causes"], voice["websocket"])
    # ... and the doctor saw it in the app's cgroup: the neighbours keep the quota spent, whatever the host's load.
    assert voice["bounds"]["scale"] >= 4 and "CPU quota ran out in" in voice["bounds"]["why"], voice["bounds"]
    assert report["causes"] == []
    statuses = dict((l["name"], l["status"]) for l in report["layers"])
    assert statuses["voice"] in ("pass", "warn"), [l for l in report["layers"] if l["name"] == "voice"]
