"""Failure at scale: audit.yml over real SSH (tests/integration/netns_hosts.py) when hosts fail the way
hosts in a big fleet do, and the one command that audits only the failed hosts again.

Six hosts, each running the demo app under gunicorn:
  ok        healthy;
  stalled   its sshd is SIGSTOPped before the run: the TCP connection is accepted (the kernel's
            backlog), no SSH banner ever comes - the connection timeout ends it (Ansible's `timeout`,
            10 s by default, passed to ssh as ConnectTimeout);
  dropped   its SSH session is killed (the session's sshd processes, by PID) while the probe runs;
  hung      its SSH session is SIGSTOPped while the probe runs: nothing comes back on a connection
            that stays up; ssh's keepalive (ServerAliveInterval, which the README recommends for
            fleets) gives the connection up after 4 s;
  frozen    the same without keepalive: the probe task's `timeout` ends it (made TASK_TIMEOUT s here,
            through ANSIBLE_TASK_TIMEOUT and the diagnose role's probe budget variable);
  nopsutil  ansible_python_interpreter is a Python without psutil (a bare venv).
Each must be reported as what happened (not healthy), the rest of the fleet still reported, the run
ended in bounded time with every file written, audit.retry listing the five, and the rerun command
the console prints must audit only them, once fixed, and leave the fleet report whole.
DOCTOR_KEEP_AUDIT=1 keeps the reports and both runs' output (audit.log, rerun.log) in /tmp/doctor-failures-*/.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import psutil
import pytest

import netns_hosts
from doctor_run import PYTHON, ROOT, ansible_env, make_app, schema

APP = "AgentLocator.main:app"
NAMES = ("ok", "stalled", "dropped", "hung", "frozen", "nopsutil")
CUT_WHILE_PROBING = ("dropped", "hung", "frozen")
FAILED = ["dropped", "frozen", "hung", "nopsutil", "stalled"]
# The frozen host's probe task is given up after this many seconds: ANSIBLE_TASK_TIMEOUT for a probe task
# without its own `timeout`, and the diagnose role's probe budget (a role variable) where it has one.
TASK_TIMEOUT = 15
# ssh gives a server that stops answering up after 2 x 2 s (the default is never). Its connection master
# (ControlPersist) exits without a word to the task, so this reads as a lost connection.
KEEPALIVE = "-o ServerAliveInterval=2 -o ServerAliveCountMax=2"
# host -> (verdict, error kind) in the fleet report
EXPECTED = {
    "ok": ("healthy", None),
    "stalled": ("unreachable", "timeout"),
    "dropped": ("unreachable", "connection_lost"),
    "hung": ("unreachable", "connection_lost"),
    "frozen": ("unreachable", "timeout"),
    "nopsutil": ("down", "psutil_missing"),
}


def bare_python(where):
    """A Python 3 with nothing installed (no psutil): a venv without pip of the interpreter under the test venv."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    assert subprocess.run([str(python), "-c", "import psutil"], stderr=subprocess.DEVNULL, check=False).returncode != 0
    return str(python)


def session_processes(host):
    """The sshd processes of the host's open SSH sessions (children of the sshd we started)."""
    return psutil.Process(host.sshd_pid).children()


def probe_running(host):
    """A module's Python has run for a second in one of the host's SSH sessions."""
    for session in session_processes(host):
        for proc in session.children(recursive=True):
            try:
                if proc.name().startswith("python") and time.time() - proc.create_time() > 1.0:
                    return True
            except psutil.NoSuchProcess:
                pass
    return False


class Saboteur(threading.Thread):
    """While the audit runs: kills the `dropped` host's SSH session and stops the `hung` and `frozen` hosts',
    once the probe runs in it. Records what it stopped (to continue it afterwards, by PID)."""

    def __init__(self, fleet, deadline=120):
        super().__init__(daemon=True)
        self.fleet = fleet
        self.deadline = time.monotonic() + deadline
        self.done = {}
        self.stopped = []

    def run(self):
        while len(self.done) < len(CUT_WHILE_PROBING) and time.monotonic() < self.deadline:
            for name, act in (("dropped", self.cut), ("hung", self.freeze), ("frozen", self.freeze)):
                host = self.fleet[name]
                if name not in self.done and probe_running(host):
                    self.done[name] = act(session_processes(host))
            time.sleep(0.1)

    def cut(self, sessions):
        for proc in sessions:
            proc.kill()
        return [p.pid for p in sessions]

    def freeze(self, sessions):
        for proc in sessions:
            for sshd in [proc] + [c for c in proc.children(recursive=True) if c.name().startswith("sshd")]:
                sshd.send_signal(signal.SIGSTOP)
                self.stopped.append(sshd)
        return [p.pid for p in sessions]

    def resume(self):
        for proc in self.stopped:
            try:
                proc.send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                pass


def write_inventory(fleet, window_of, psutil_python):
    """The inventory at fleet.inventory_path; `window_of(name)` -> that host's doctor_stability_window;
    `psutil_python`: the nopsutil host's ansible_python_interpreter."""
    hosts = {}
    for name in NAMES:
        host = fleet[name]
        hosts[name] = dict(fleet.connection_vars(name, PYTHON), doctor_app=APP, doctor_chdir=str(host.dir / "app"),
                           doctor_python=PYTHON, doctor_env_file=str(host.dir / "service.env"),
                           doctor_log_file=str(host.dir / "app.log"), doctor_stability_window=window_of(name))
    hosts["hung"]["ansible_ssh_common_args"] += " " + KEEPALIVE
    hosts["nopsutil"]["ansible_python_interpreter"] = psutil_python
    fleet.inventory_path.write_text(json.dumps({"all": {"vars": {"doctor_report_dir": str(fleet.reports)},
                                                        "hosts": hosts}}))


def ansible_playbook(argv, timeout=240, env=None):
    return subprocess.run(argv, cwd=ROOT, env=dict(ansible_env(), **(env or {})), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def fleet():
    work = netns_hosts.fleet_work_dir("doctor-failures-")
    with netns_hosts.Fleet(work / "fleet", NAMES) as hosts:
        for name in NAMES:
            host = hosts[name]
            app_dir = make_app(host.dir)
            (host.dir / "service.env").write_text("PORT=8000\n")
            if name not in CUT_WHILE_PROBING:        # those start right before the audit (young services)
                host.start_gunicorn(app_dir, "0.0.0.0:8000", env={"PORT": "8000"}, log=host.dir / "app.log")
        hosts.work = work
        hosts.reports = work / "reports"
        hosts.inventory_path = work / "inventory.json"
        hosts.python_without_psutil = bare_python(work / "bare-venv")
        try:
            yield hosts
        finally:
            os.kill(hosts["stalled"].sshd_pid, signal.SIGCONT)   # stopped processes ignore the TERM of teardown
    if not os.environ.get("DOCTOR_KEEP_AUDIT"):
        shutil.rmtree(str(work), ignore_errors=True)


@pytest.fixture(scope="module")
def first(fleet):
    """The audit with every failure happening: -> (CompletedProcess, seconds, audit.json)."""
    # The probes of the hosts cut while probing watch /healthz until their just started services are 20 s
    # old: long enough to be cut while they run.
    write_inventory(fleet, lambda name: 20 if name in CUT_WHILE_PROBING else 3, fleet.python_without_psutil)
    for name in CUT_WHILE_PROBING:
        fleet[name].start_gunicorn(fleet[name].dir / "app", "0.0.0.0:8000", env={"PORT": "8000"},
                                   log=fleet[name].dir / "app.log")
    os.kill(fleet["stalled"].sshd_pid, signal.SIGSTOP)
    saboteur = Saboteur(fleet)
    saboteur.start()
    started = time.monotonic()
    try:
        done = ansible_playbook([str(Path(PYTHON).parent / "ansible-playbook"), "-i", str(fleet.inventory_path),
                                 str(ROOT / "playbooks" / "audit.yml"), "-f", "10",
                                 "-e", "__diagnose_probe_timeout=%d" % TASK_TIMEOUT],
                                env={"ANSIBLE_TASK_TIMEOUT": str(TASK_TIMEOUT)})
        seconds = time.monotonic() - started
        (fleet.work / "audit.log").write_text(done.stdout)      # kept with DOCTOR_KEEP_AUDIT=1
    finally:
        saboteur.join(timeout=5)
        saboteur.resume()
        fleet.stop_ssh_masters()     # the cut and frozen connections' ssh clients, by PID
    assert sorted(saboteur.done) == sorted(CUT_WHILE_PROBING), "the probe was not seen running:\n" + done.stdout[-4000:]
    return done, seconds, json.loads((fleet.reports / "audit.json").read_text())


def test_each_failure_is_reported_as_what_happened(first):
    done, seconds, audit = first
    found = {host: (r["verdict"], (r.get("error") or {}).get("kind")) for host, r in audit["reports"].items()}
    assert found == EXPECTED, done.stdout[-6000:]
    reports = audit["reports"]
    assert "banner exchange" in reports["stalled"]["error"]["message"]
    assert "no answer from the host within the task timeout (%d s)" % TASK_TIMEOUT in reports["frozen"]["error"]["message"]
    assert "psutil" in reports["nopsutil"]["error"]["message"] and "bare-venv" in reports["nopsutil"]["error"]["message"]
    summary = audit["summary"]
    assert summary["by_verdict"] == {"down": 1, "unreachable": 4, "degraded": 0, "healthy": 1}
    assert summary["not_diagnosed"] == {"dropped": "connection_lost", "hung": "connection_lost", "frozen": "timeout",
                                        "nopsutil": "psutil_missing", "stalled": "timeout"}
    # the console's fleet table names each
    for host, label in (("stalled", "UNREACHABLE (TIMEOUT)"), ("dropped", "UNREACHABLE (CONNECTION LOST)"),
                        ("hung", "UNREACHABLE (CONNECTION LOST)"), ("frozen", "UNREACHABLE (TIMEOUT)"),
                        ("nopsutil", "DOWN (PSUTIL MISSING)"), ("ok", "HEALTHY")):
        assert re.search(r'"  %s +%s ' % (host, re.escape(label)), done.stdout), (host, done.stdout[-4000:])


def test_the_run_ends_in_bounded_time_with_every_file_written(fleet, first):
    done, seconds, audit = first
    # the hung and frozen hosts cost their keepalive and timeout, not the run: no host waits for another
    assert seconds < 120, seconds
    assert done.returncode != 0
    assert "5 host(s) down or unreachable: %s" % ", ".join(FAILED) in done.stdout
    for name in NAMES:
        report = json.loads((fleet.reports / ("%s.json" % name)).read_text())
        jsonschema.validate(report, schema())
    assert "No diagnosis: the host did not answer in time." in (fleet.reports / "stalled.md").read_text()
    assert "No diagnosis: the connection to the host dropped" in (fleet.reports / "hung.md").read_text()
    assert "python3-psutil" in (fleet.reports / "nopsutil.md").read_text()
    suites = {s.get("name"): s for s in ET.parse(str(fleet.reports / "audit.xml")).getroot().findall("testsuite")}
    assert {h: suites[h].find("testcase/error").get("type") for h in FAILED} == {h: EXPECTED[h][1] for h in FAILED}


def test_the_printed_command_reruns_only_the_failed_hosts(fleet, first):
    done = first[0]
    retry = fleet.reports / "audit.retry"
    assert retry.read_text() == "".join("%s\n" % h for h in FAILED)
    printed = re.search(r'rerun only the 5 failed host\(s\) \(with the same -e options, if any\): ([^"]+)"', done.stdout)
    assert printed, done.stdout[-4000:]
    command = shlex.split(printed.group(1))
    assert command[-2:] == ["--limit", "@%s" % retry]
    ok_report = (fleet.reports / "ok.json").stat().st_mtime_ns

    # fixed: the stalled sshd runs again, a Python with psutil is named, the services are old enough for one sample
    os.kill(fleet["stalled"].sshd_pid, signal.SIGCONT)
    write_inventory(fleet, lambda name: 3, PYTHON)
    command[0] = str(Path(PYTHON).parent / command[0])    # the venv's ansible-playbook, as typed in its shell
    rerun = ansible_playbook(command)
    (fleet.work / "rerun.log").write_text(rerun.stdout)
    assert rerun.returncode == 0, rerun.stdout[-6000:]
    recap = re.findall(r"^(\w+)\s+: ok=", rerun.stdout, re.M)
    assert sorted(recap) == FAILED          # ok was not touched
    assert (fleet.reports / "ok.json").stat().st_mtime_ns == ok_report
    audit = json.loads((fleet.reports / "audit.json").read_text())
    assert {h: r["verdict"] for h, r in audit["reports"].items()} == dict.fromkeys(NAMES, "healthy")
    assert audit["reports"]["ok"]["carried_from"] == audit["drift"]["previous_generated_at"]
    assert sorted(e["host"] for e in audit["drift"]["fixed"]) == FAILED
    assert audit["drift"]["removed"] == [] and audit["drift"]["new"] == []
    assert "fleet: 6 hosts: 0 down, 0 unreachable, 0 degraded, 6 healthy" in rerun.stdout
    assert not retry.exists()      # nothing left to rerun
