"""What one probe call costs a healthy, settled host: wall time and CPU seconds, per part, on the target side.

    .venv/bin/python benchmarks/probe_cost.py [--runs 5]

Starts the demo app under gunicorn (sync, 1 worker) on a free loopback port (stopped by PID at the end), waits
until it is older than a 1 s stability window, then runs the probe (probes/host.probe_host, in this process, as the
probe module does on a host) --runs times in each variant: everything; without the voice layer's call; without the
dry import. Per variant it prints the median wall time, the CPU seconds of the probe itself (this process), of what
it started and waited for (the dry import's interpreter) and of the service's gunicorn (master and worker: what the
simulated call and /healthz cost it), and the probe's own "timings". At 100 hosts on 2 cores every CPU second of a
host is 0.5 s of the audit's wall time: this says which part to cut.

    .venv/bin/python benchmarks/probe_cost.py --module [--collections DIR] [--runs 10]

runs the probe module instead as a host runs it: its AnsiballZ payload, built by ansible (one ad-hoc run on
localhost, the file kept), in a fresh interpreter each run, so its imports count too (AnsiballZ imports the
collection's module_utils from a zip: compiled on every run).
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
# --collections DIR: measure another checkout's probe (e.g. main's, for a before/after)
sys.path.insert(0, sys.argv[sys.argv.index("--collections") + 1] if "--collections" in sys.argv else str(ROOT / ".collections"))

import psutil  # noqa: E402
from doctor_run import DEMO_APP, PYTHON  # noqa: E402
from gunicorn_service import GunicornService, free_port  # noqa: E402
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import host  # noqa: E402

VARIANTS = (("all", {}), ("no voice call", {"voice_checks": False}), ("no dry import", {"dry_import": False}),
            ("neither", {"voice_checks": False, "dry_import": False}))


def cpu_of(pids):
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def one(params, service_pids):
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    app = cpu_of(service_pids)
    started = time.time()
    facts = host.probe_host(psutil, params)
    wall = time.time() - started
    me2, kids2 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "probe": me2.ru_utime + me2.ru_stime - me.ru_utime - me.ru_stime,
            "children": kids2.ru_utime + kids2.ru_stime - kids.ru_utime - kids.ru_stime,
            "service": cpu_of(service_pids) - app, "timings": facts["timings"]}


def ansiballz(collections, params, work):
    """The probe module's AnsiballZ file for `params`, as ansible sends it to a host: kept from one ad-hoc run."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=collections,
               ANSIBLE_KEEP_REMOTE_FILES="1", ANSIBLE_PIPELINING="0", ANSIBLE_REMOTE_TMP=str(work / "remote"),
               ANSIBLE_LOCAL_TEMP=str(work / "local"))
    args = " ".join("%s=%s" % kv for kv in sorted(params.items()))
    subprocess.run([str(Path(PYTHON).parent / "ansible"), "localhost", "-c", "local", "-e", "ansible_python_interpreter=%s"
                    % PYTHON, "-m", "sre.gunicorn_doctor.probe", "-a", args], env=env, cwd=str(work),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=300)
    return next((work / "remote").rglob("AnsiballZ_probe.py"))


def module_run(path, service_pids):
    """One run of the probe module's AnsiballZ file in a fresh interpreter: its wall time and CPU (with its children)."""
    kids, app, started = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_of(service_pids), time.time()
    subprocess.run([PYTHON, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=300)
    wall, kids2 = time.time() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "probe": 0.0, "children": kids2.ru_utime + kids2.ru_stime - kids.ru_utime - kids.ru_stime,
            "service": cpu_of(service_pids) - app, "timings": {}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--collections", help="the collections path whose probe is measured (default: this checkout's)")
    parser.add_argument("--module", action="store_true", help="run the probe module as a host does (AnsiballZ, a fresh "
                        "interpreter each run: the imports count), not probe_host in this process")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="doctor-probe-cost-"))
    port = free_port()
    log = work / "gunicorn.log"
    service = GunicornService(DEMO_APP, "AgentLocator.main:app", log, bind="0.0.0.0:%d" % port,
                              env={"PORT": str(port)}, python=PYTHON)
    service.start()
    try:
        service.wait_ready()
        time.sleep(1.5)   # older than the 1 s window below: a settled service
        pids = [service.pid] + [p.pid for p in psutil.Process(service.pid).children()]
        base = {"app": "AgentLocator.main:app", "chdir": str(DEMO_APP), "python": PYTHON, "port": str(port),
                "log_file": str(log), "stability_window": 1, "voice_pace": 4}
        print("load before: %.2f %.2f %.2f on %d CPUs" % (os.getloadavg() + (os.cpu_count(),)))
        for name, extra in VARIANTS:
            if args.module:
                payload = ansiballz(args.collections or str(ROOT / ".collections"), dict(base, **extra),
                                    Path(tempfile.mkdtemp(dir=str(work))))
                runs = [module_run(payload, pids) for dummy in range(args.runs)]
            else:
                runs = [one(dict(base, **extra), pids) for dummy in range(args.runs)]
            med = dict((k, statistics.median(r[k] for r in runs)) for k in ("wall", "probe", "children", "service"))
            print("%-14s wall %.3f s; CPU: probe %.3f s, its children %.3f s, the service %.3f s; total %.3f s" % (
                name, med["wall"], med["probe"], med["children"], med["service"],
                med["probe"] + med["children"] + med["service"]))
            if runs[-1]["timings"]:   # (--module: the module process and what it started are "its children")
                print("               timings (last run): %s" % ", ".join(
                    "%s %.3f" % kv for kv in sorted(runs[-1]["timings"].items(), key=lambda kv: -kv[1])))
        print("load after: %.2f %.2f %.2f" % os.getloadavg())
    finally:
        service.stop()


if __name__ == "__main__":
    main()
