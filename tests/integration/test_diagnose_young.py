"""diagnose.yml on services that crash-loop under a keep-alive runner, a settled service bound to another port, and a
--reuse-port master (which logs "Listening at:  (PID)" with no address). Real gunicorn, real bash loops, stopped by
PID."""

import sys
import time

import psutil
import pytest

from doctor_run import PYTHON, ROOT, cause, cause_ids, diagnose, layer, make_app
from gunicorn_service import free_port, start_keep_alive_loop
from test_diagnose_server_layers import base_vars, healthy_service
from test_stabilize import stop_tree


def logfile():
    """The collection's log reader, by the collection's own name (.collections, made by bootstrap.sh)."""
    if str(ROOT / ".collections") not in sys.path:
        sys.path.insert(0, str(ROOT / ".collections"))
    from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import logfile as found
    return found


@pytest.fixture(autouse=True)
def no_eventlet_env(monkeypatch):
    """The loops inherit os.environ: the test decides the EVENTLET_* variables."""
    for name in ("EVENTLET_NO_GREENDNS", "EVENTLET_HUB", "GUNICORN_CMD_ARGS"):
        monkeypatch.delenv(name, raising=False)


def import_error(text):
    return text.replace("import os\n", "import os\nimport speech_client_that_is_not_installed  # noqa\n", 1)


def check(report, layer_name, name):
    return next(c for c in layer(report, layer_name)["checks"] if c["name"] == name)


def wait_log(path, needle, count, timeout=60):
    """Until the log holds `needle` `count` times (the loop's masters failed that often)."""
    deadline = time.time() + timeout
    while (path.read_text(errors="replace") if path.exists() else "").count(needle) < count:
        assert time.time() < deadline, "%r not logged %d times within %d s" % (needle, count, timeout)
        time.sleep(0.1)


def wait_children(pid, count, timeout=60):
    """Until process `pid` has started `count` gunicorns (each seen alive once)."""
    seen, deadline = set(), time.time() + timeout
    while len(seen) < count:
        assert time.time() < deadline, "pid %d started %d gunicorns within %d s, not %d" % (pid, len(seen), timeout, count)
        try:
            seen.update(c.pid for c in psutil.Process(pid).children() if "gunicorn" in " ".join(c.cmdline()))
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.05)


@pytest.fixture
def keep_alive(tmp_path):
    """Start a keep-alive loop; every loop and what it started is stopped by PID at the end."""
    loops = []

    def start(app_dir, port, args="", env=None):
        loops.append(start_keep_alive_loop(app_dir, port, tmp_path / "gunicorn.log", PYTHON, args, env))
        return loops[-1]
    yield start
    for loop in loops:
        stop_tree(loop.pid)


def test_a_crash_loop_of_an_import_error_is_a_boot_exception_not_a_sigterm(tmp_path, port, keep_alive):
    app_dir = make_app(tmp_path, import_error)
    loop = keep_alive(app_dir, port)
    wait_log(tmp_path / "gunicorn.log", "Reason: Worker failed to boot", 2)
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_port=port, doctor_voice_checks=False))[0]

    assert report["verdict"] == "down"
    assert report["causes"][0]["id"] == "boot_exception", cause_ids(report)   # the root cause first
    assert "periodic_sigterm" not in cause_ids(report)      # nothing sent SIGTERM: each master gave up on its own
    found = cause(report, "boot_exception")
    assert any("speech_client_that_is_not_installed" in e for e in found["evidence"])
    loop_line = [e for e in found["evidence"] if e.startswith("crash loop: ")]
    assert loop_line and "bash loop pid %d" % loop.pid in loop_line[0], found["evidence"]
    assert check(report, "process", "no periodic SIGTERM")["status"] == "pass"


def test_an_eventlet_crash_loop_names_the_invalid_hub_in_the_runners_environment(tmp_path, port, keep_alive):
    app_dir = make_app(tmp_path)
    loop = keep_alive(app_dir, port, "-k eventlet", {"EVENTLET_HUB": "no_such_hub"})
    # gunicorn refuses the worker class before it opens its log (its error goes to the loop's output): the masters
    # the loop started are the evidence that it loops.
    wait_children(loop.pid, 2)
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_port=port, doctor_voice_checks=False))[0]

    assert report["verdict"] == "down"
    found = cause(report, "eventlet_env_invalid")
    assert found["severity"] == "fail"
    # Read from the loop (no master lives long enough) or from a master caught alive: both carry the loop's value.
    assert any(e.startswith("EVENTLET_HUB=no_such_hub in /proc/") for e in found["evidence"]), found["evidence"]
    assert "periodic_sigterm" not in cause_ids(report)
    assert report["causes"][0]["id"] != "not_listening", cause_ids(report)
    if any("(bash pid %d, which restarts the master" % loop.pid in e for e in found["evidence"]):
        assert "bash pid %d" % loop.pid in found["remedy"]
    # Conclusive at once: the window stops at its first sample and no spare-port boot is paid for - each would take
    # another hub (or -k sync) and say nothing of the masters that fail on this one.
    stable = check(report, "healthz", "stable 200")["detail"]
    assert "one sample suffices: EVENTLET_HUB=no_such_hub in /proc/" in stable, stable
    boot = check(report, "eventlet", "eventlet boot")
    assert boot["status"] == "skip" and "every eventlet master of the app fails on it" in boot["detail"], boot
    assert "preload_boot" not in report["timings"], report["timings"]
    assert check(report, "boot", "preload boot")["status"] == "skip"


def test_a_settled_service_on_another_port_is_judged_on_one_sample(services, tmp_path, port):
    other = free_port()
    service = healthy_service(services, tmp_path, port, bind="0.0.0.0:%d" % other)
    window = 2
    # Older than the window: every process of the app (the worker is forked after the master).
    worker = psutil.Process(service.pid).children()[0]
    time.sleep(max(0.0, worker.create_time() + window + 0.2 - time.time()))
    report = diagnose(tmp_path, base_vars(service, tmp_path, doctor_stability_window=window,
                                          doctor_voice_checks=False))[0]

    assert cause_ids(report, "fail") == ["wrong_port"]
    stable = check(report, "healthz", "stable 200")["detail"]
    assert "one sample suffices" in stable and "listens on %d" % other in stable, stable
    preload = check(report, "boot", "preload boot")
    assert preload["status"] == "skip" and "only not on $PORT" in preload["detail"]
    assert "preload_boot" not in report["timings"]


def test_a_reuse_port_master_logs_no_address_and_is_not_taken_for_a_bind(services, tmp_path, port):
    service = healthy_service(services, tmp_path, port, extra_args=["--reuse-port"])
    log = service.log_text()
    assert "Listening at:  (%d)" % service.pid in log   # gunicorn 25: the master holds no socket, each worker binds
    gen = logfile().collect(service.log_path)["generations"][-1]
    assert gen["pid"] == service.pid and gen["served"] and gen["listening"] is None

    report = diagnose(tmp_path, base_vars(service, tmp_path, doctor_voice_checks=False))[0]
    assert report["verdict"] == "healthy", report["causes"]
    assert report["restart_history"]["timeline"][-1].endswith("master %d started (sync), 1 worker boot" % service.pid)
