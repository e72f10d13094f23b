"""A master that cannot boot the app, restarted by a keep-alive runner (a crash loop): the root cause comes first, and
nothing in it reads as a periodic SIGTERM - each master logged "Reason: Worker failed to boot." and gave up on its
own. Log lines in gunicorn 25.3's words (test_restart_history reads a real one); facts as probe_host returns them."""

import copy
import os
import subprocess
import time

import psutil
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import eventlet as eventlet_probe
from test_eventlet_judge import HEALTHY, GOOD_BOOT
from test_verdict import (PORT, T0, cause, check, diagnose, gline, healthy_facts, ids, master_fact, set_healthz, set_sockets,
                          sock, start_lines, stop_lines, stop_service, write_log)
from test_window_judge import master, watched

LOOP = {"kind": "shell_loop", "pid": 777, "name": "bash", "command": "bash -c while true; do python -m gunicorn "
        "AgentLocator.main:app -b 0.0.0.0:$1; sleep 1; done", "source": None, "settings": {},
        "found": "its command runs AgentLocator.main:app"}


@pytest.fixture
def facts(tmp_path):
    return healthy_facts(tmp_path)


def failed_boot(offset, pid):
    """One master of the loop: it starts, its worker cannot import the app, it gives up."""
    return start_lines(offset, pid, workers=(pid + 1,)) + [
        gline(offset, pid + 1, "Exception in worker process", "ERROR"),
        "Traceback (most recent call last):",
        '  File "/srv/app/AgentLocator/main.py", line 3, in <module>',
        "ModuleNotFoundError: No module named 'speech_client'",
        gline(offset + 1, pid + 1, "Worker exiting (pid: %d)" % (pid + 1)),
        gline(offset + 1, pid, "Shutting down: Master"),
        gline(offset + 1, pid, "Reason: Worker failed to boot.")]


def crash_loop(facts, tmp_path, young=True):
    """Three masters that gave up two seconds apart, then (`young`) a fourth that has only just started."""
    stop_service(facts)
    lines = failed_boot(-6, 5001) + failed_boot(-4, 5011) + failed_boot(-2, 5021)
    write_log(facts, tmp_path, lines + (start_lines(0, 5031) if young else []))
    facts["process"]["restarters"] = {"runners": [dict(LOOP)], "health_checkers": []}
    return facts


def test_a_crash_loop_is_a_boot_exception_first_and_no_periodic_sigterm(facts, tmp_path):
    report = diagnose(crash_loop(facts, tmp_path))
    assert ids(report)[0] == "boot_exception" and "periodic_sigterm" not in ids(report), ids(report)
    assert ids(report).index("boot_exception") < ids(report).index("not_listening")
    evidence = cause(report, "boot_exception")["evidence"]
    # The newest master has not failed yet: the run before it is the evidence.
    assert "Reason: Worker failed to boot." in " ".join(evidence)
    assert "last traceback: ModuleNotFoundError: No module named 'speech_client'" in evidence
    assert ("crash loop: 3 masters could not boot the app, restarted 2 times in 4 s, every 2 s +/- 1; restarted by "
            "bash loop pid 777: ") in evidence[-1]
    assert check(report, "process", "no periodic SIGTERM")["status"] == "pass"
    gens = facts["log"]["generations"]
    assert [g["end"] for g in gens] == ["failed", "failed", "failed", None]
    assert "could not boot the app, gave up after 1 s" in report["restart_history"]["timeline"][0]


def test_an_old_failure_before_a_settled_master_is_not_a_boot_exception(facts, tmp_path):
    crash_loop(facts, tmp_path)
    facts["process"]["masters"] = [master_fact(pid=5031, age=3600.0, workers=1)]
    set_sockets(facts, [sock("0.0.0.0", PORT, 5031, "master")])
    set_healthz(facts, [200])
    assert "boot_exception" not in ids(diagnose(facts))


def test_masters_sigtermed_by_a_loop_are_still_a_periodic_sigterm(facts, tmp_path):
    stop_service(facts)
    lines = []
    for i, pid in enumerate((5001, 5011, 5021)):
        lines += start_lines(i * 8 - 24, pid, workers=(pid + 1,)) + stop_lines(i * 8 - 17, pid)
    write_log(facts, tmp_path, lines)
    facts["process"]["restarters"] = {"runners": [dict(LOOP)], "health_checkers": []}
    assert "periodic_sigterm" in ids(diagnose(facts))


def test_a_reuse_port_master_logs_no_address_but_served(facts, tmp_path):
    # gunicorn 25 under --reuse-port: `Listening at:  (PID)`; its SIGTERMed masters still count.
    stop_service(facts)
    lines = []
    for i, pid in enumerate((5001, 5011, 5021)):
        lines += [gline(i * 8 - 24, pid, "Starting gunicorn 25.3.0"), gline(i * 8 - 24, pid, "Listening at:  (%d)" % pid),
                  gline(i * 8 - 24, pid, "Using worker: sync")]
        lines += [gline(i * 8 - 17, pid, "Shutting down: Master")]
    write_log(facts, tmp_path, lines)
    gens = facts["log"]["generations"]
    assert all(g["served"] and g["listening"] is None and g["end"] == "shutdown" for g in gens)
    assert [e.get("url") for e in facts["log"]["events"] if e["event"] == "listening"] == [None] * 3
    # No "Handling signal: term" and no vanished master: shut down, but not shown to be stopped from outside.
    assert "periodic_sigterm" not in ids(diagnose(facts))


def test_a_master_that_gave_up_during_the_window_is_not_replaced_by_a_runners_sigterm(facts, tmp_path):
    crash_loop(facts, tmp_path, young=False)
    reason = {"at": 1.2, "event": "worker_failed_boot", "pid": 5041,
              "line": "[2026-11-25 12:00:01 +0000] [5041] [INFO] Reason: Worker failed to boot."}
    watched(facts, [master("started", 5041, 0.3), master("exited", 5041, 1.3), master("started", 5051, 2.4)],
            [reason], ended_by="process")
    facts["healthz"]["samples"] = [dict(s, status=None, error="Connection refused") for s in facts["healthz"]["samples"]]
    report = diagnose(facts)
    assert "periodic_sigterm" not in ids(report), ids(report)
    seen = check(report, "process", "masters through the window")
    assert seen["status"] == "warn"
    assert "master 5041 replaced by 5051 at +2.4 s (it gave up on its own: Reason: Worker failed to boot.)" in seen["detail"]


def test_the_hub_from_the_environment_of_the_loop_that_restarts_the_master(facts):
    stop_service(facts)
    ev = copy.deepcopy(HEALTHY)
    loop = subprocess.Popen(["bash", "-c", "while true; do sleep 1; done", "python", "8123", "log", "-k eventlet"],
                            env=dict(os.environ, EVENTLET_HUB="no_such_hub"))
    try:
        while psutil.Process(loop.pid).cmdline()[:1] != ["bash"]:   # until it has exec'd: a runner is long-lived
            time.sleep(0.01)
        found = eventlet_probe.runner_processes(psutil, {"runners": [dict(LOOP, pid=loop.pid)]})
    finally:
        loop.kill()
        loop.wait()
    views = [r["view"] for r in found]
    assert views[0]["EVENTLET_HUB"] == "no_such_hub" and views[0]["runner_pid"] == loop.pid, views
    assert found[0]["worker_class"] == "eventlet"   # its full command line, the -k it gives each master
    ev.update(settings=None, stable=False, boot=dict(GOOD_BOOT), boot_skipped=None,
              env={"running": [], "next_start": views, "env_file": None})
    facts["eventlet"] = ev
    found = cause(diagnose(facts), "eventlet_env_invalid")
    assert found["severity"] == "fail"
    assert found["evidence"][0].startswith("EVENTLET_HUB=no_such_hub in /proc/%d/environ (bash pid %d, which restarts "
                                           "the master: " % (loop.pid, loop.pid))
    assert "the environment of the process that restarts gunicorn (/proc/%d/environ" % loop.pid in found["remedy"]


def test_a_hub_the_log_cannot_load_is_invalid_though_no_environment_shows_it(facts):
    stop_service(facts)
    ev = copy.deepcopy(HEALTHY)
    line = "ModuleNotFoundError: No module named 'eventlet.hubs.no_such_hub'"
    ev.update(settings=None, stable=False, boot=dict(GOOD_BOOT), boot_skipped=None,
              env={"running": [], "next_start": [], "env_file": None})
    ev["log"]["errors"] = [{"kind": "hub_invalid", "line": line}]
    facts["eventlet"] = ev
    found = cause(diagnose(facts), "eventlet_env_invalid")
    assert found["evidence"][0].endswith(line) and found["severity"] == "fail"


def blocked(offset, pid):
    """A master of a second runner that cannot bind the address the running master holds (gunicorn retries, then
    gives up)."""
    return [gline(offset, pid, "Starting gunicorn 25.3.0"),
            gline(offset, pid, "Connection in use: ('0.0.0.0', %d)" % PORT, "ERROR"),
            gline(offset + 1, pid, "Can't connect to ('0.0.0.0', %d)" % PORT, "ERROR")]


@pytest.mark.parametrize("runner, to_stop", [
    ({"kind": "detached", "pid": None, "program": "voice", "detail": "left behind by supervisord [program:voice]"},
     "pid 4242 started by detached"),
    ({"kind": "supervisord", "pid": 90, "program": "voice", "detail": "supervisord"},
     "the runner of the masters that could not bind (see restart_history), not master 4242 started by supervisord"),
])
def test_masters_that_cannot_bind_beside_the_one_running_are_a_second_runner(facts, tmp_path, runner, to_stop):
    # The one running master serves $PORT; since it started, another runner's masters came and gave up on the address.
    facts["process"]["masters"][0].update(runner=runner, create_time=T0 - 3600)
    write_log(facts, tmp_path, start_lines(-3600, 4242) + blocked(-12, 6001) + blocked(-6, 6011) + blocked(-1, 6021))
    report = diagnose(facts)
    assert ids(report) == ["multiple_runners"], ids(report)
    found = cause(report, "multiple_runners")
    assert "3 masters started since master 4242, each giving up because it could not bind" in found["evidence"][1]
    assert to_stop in found["remedy"]
    assert check(report, "process", "one runner")["status"] == "fail"


def test_one_master_that_could_not_bind_once_is_no_second_runner(facts, tmp_path):
    facts["process"]["masters"][0]["create_time"] = T0 - 3600
    write_log(facts, tmp_path, start_lines(-3600, 4242) + blocked(-6, 6001))
    assert ids(diagnose(facts)) == []
