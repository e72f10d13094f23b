"""stabilize.yml with eventlet wanted: sync first, then eventlet (env + pins + switch + verify); an eventlet
that cannot start (an incompatible pin forced by a variable) ends on sync, healthy, and the run says why.

The app runs in its own venv in a tmp dir (the pins role installs into it; the test venv is never touched).
"""

import os
import re
import subprocess
import sys

import psutil
import pytest

from doctor_run import run_playbook
from gunicorn_service import free_port
from test_stabilize import (Host, assert_idempotent, listening_pid, recap, serves, stabilize, stabilize_report, stable_200,
                            wait_for)

BASE_PYTHON = getattr(sys, "_base_executable", None) or sys.executable
APP_VENV_PINS = ("flask==3.1.3", "flask-sock==0.7.0", "gunicorn==25.3.0", "eventlet==0.41.3", "greenlet==3.5.6")


@pytest.fixture(scope="module")
def app_python(tmp_path_factory):
    """A venv of the app's own (what doctor_python points at on a real host)."""
    root = tmp_path_factory.mktemp("appvenv") / "venv"
    subprocess.run([BASE_PYTHON, "-m", "venv", str(root)], check=True, timeout=300)
    python = root / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *APP_VENV_PINS],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    return str(python)


def versions(python):
    out = subprocess.run([python, "-c", "from importlib import metadata as m; print(m.version('gunicorn'), "
                          "m.version('eventlet'))"], stdout=subprocess.PIPE, text=True, check=True).stdout
    return out.split()


@pytest.fixture
def eventlet_host(tmp_path, app_python):
    h = Host(tmp_path)
    # The runbook's invalid hub in the service environment: stabilize must replace it, never write it.
    h.env_file.write_text("PORT=%d\nEVENTLET_HUB=select\n" % h.port)
    try:
        yield h
    finally:
        h.cleanup()


def test_eventlet_after_a_stable_sync(eventlet_host, tmp_path, app_python):
    host = eventlet_host
    host.strays.append(host.spawn([app_python, "-m", "AgentLocator.main"], host.app_dir, env={"PORT": "0"}))
    host_vars = host.vars(doctor_python=app_python, doctor_worker_class="eventlet", doctor_service_manager="standalone")
    del host_vars["doctor_log_file"]  # no log given: the service logs to SERVICE_DIR/run/gunicorn.log

    out = stabilize(tmp_path, host_vars)

    assert recap(out)["failed"] == 0
    stable_200(host.port)
    master = host.service_pid()
    assert serves(master, host.port)
    assert "eventlet" in psutil.Process(master).cmdline()
    environ = psutil.Process(master).environ()
    assert environ["EVENTLET_HUB"] == "selects" and environ["EVENTLET_NO_GREENDNS"] == "yes"
    assert "EVENTLET_HUB=selects" in host.env_file.read_text()
    host.assert_strays_gone()
    for path in [host.env_file] + list(host.service_dir.iterdir()):
        if path.is_file() and path.suffix != ".gz":
            assert "EVENTLET_HUB=select\n" not in path.read_text(errors="replace"), path
    report = stabilize_report(tmp_path)
    assert report["result"] == "stabilized" and report["eventlet"]["ok"] is True
    assert report["after"]["verdict"] in ("healthy", "degraded")
    assert "Listening at" in (host.service_dir / "run" / "gunicorn.log").read_text()
    wrote = [a["reason"] for a in report["actions"] if a["action"] == "wrote service file"]
    assert any("(-k sync)" in r for r in wrote) and any("(-k eventlet)" in r for r in wrote)

    again = stabilize(tmp_path, host_vars)
    assert_idempotent(again)
    assert host.service_pid() == master


def test_eventlet_that_cannot_start_falls_back_to_sync(eventlet_host, tmp_path, app_python):
    host = eventlet_host
    host.wrong_port_master()
    host.decoys_start()
    # gunicorn 25 refuses eventlet < 0.40.3: an incompatible pin, forced.
    host_vars = host.vars(doctor_python=app_python, doctor_worker_class="eventlet", doctor_service_manager="standalone",
                          doctor_eventlet_requirements=["eventlet==0.39.1"])

    out = stabilize(tmp_path, host_vars)

    counts = recap(out)
    assert counts["failed"] == 0 and counts["rescued"] == 1
    assert versions(app_python) == ["25.3.0", "0.39.1"]
    stable_200(host.port)
    master = host.service_pid()
    assert serves(master, host.port) and "sync" in psutil.Process(master).cmdline()
    assert "running on sync; eventlet failed because" in out
    assert "eventlet worker requires eventlet 0.40.3 or higher" in out
    report = stabilize_report(tmp_path)
    assert report["result"] == "sync_fallback" and report["eventlet"]["ok"] is False
    assert "0.40.3" in report["eventlet"]["reason"]
    host.assert_strays_gone()
    host.assert_decoys_alive()

    # The same pins again: nothing changes, the run says why it stays on sync.
    again = stabilize(tmp_path, host_vars)
    assert_idempotent(again)
    assert "running on sync; eventlet failed because" in again
    assert host.service_pid() == master

    # Without the fallback allowed, the same state is a failed run - and the service still serves.
    strict = run_playbook("stabilize.yml", tmp_path, dict(host_vars, doctor_allow_sync_fallback=False), check=False)
    assert strict.returncode != 0
    assert "running on sync; eventlet failed because" in strict.stdout
    assert "changed=0" in strict.stdout
    stable_200(host.port, 1)
    assert os.path.exists(host.service_dir / "eventlet-fallback.json")


def test_eventlet_that_cannot_start_falls_back_to_sync_under_supervisord(eventlet_host, tmp_path, app_python, supervisord):
    """The same fallback where a real supervisord runs the app: its program ends on the sync command."""
    host = eventlet_host
    wrong = free_port()
    (supervisord["conf_dir"] / "agentlocator.conf").write_text(
        "[program:agentlocator]\ncommand=%s -m gunicorn AgentLocator.main:app -b 0.0.0.0:%d\n"
        "directory=%s\nenvironment=PORT=\"%d\"\nautorestart=true\nstopasgroup=true\n" % (app_python, wrong, host.app_dir, host.port))
    subprocess.run(supervisord["ctl"] + ["update"], stdout=subprocess.DEVNULL, check=True)
    wait_for(lambda: listening_pid(wrong), 30, "the supervisord program on the wrong port")
    host_vars = host.vars(doctor_python=app_python, doctor_worker_class="eventlet",
                          doctor_eventlet_requirements=["eventlet==0.39.1"])

    out = stabilize(tmp_path, host_vars)

    counts = recap(out)
    assert counts["failed"] == 0 and counts["rescued"] == 1
    assert "eventlet worker requires eventlet 0.40.3 or higher" in out
    stable_200(host.port)
    status = subprocess.run(supervisord["ctl"] + ["status", "agentlocator"], stdout=subprocess.PIPE, text=True,
                            check=False).stdout
    master = int(re.search(r"RUNNING\s+pid (\d+)", status).group(1))
    assert psutil.Process(master).parent().pid == supervisord["pid"]
    assert serves(master, host.port) and "sync" in psutil.Process(master).cmdline()
    report = stabilize_report(tmp_path)
    assert report["result"] == "sync_fallback" and report["service"]["manager"] == "supervisord"
    assert "-k sync" in (host.service_dir / "run.sh").read_text()
