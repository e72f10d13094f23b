"""strays.choose/stop against real processes: the app's earlier runs are chosen with a reason, decoys never."""

import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils import strays

APP = "AgentLocator.main:app"
SLEEPER = "import time\ntime.sleep(120)\n"
IGNORES_TERM = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "open('ready', 'w').close()\ntime.sleep(120)\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def procs():
    started = []

    def spawn(argv, cwd):
        proc = subprocess.Popen(argv, cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def checkout(path, main=SLEEPER):
    """A directory that looks like the app: AgentLocator/main.py, and a gunicorn.py that only sleeps
    (so `python -m gunicorn AgentLocator.main:app` has gunicorn's command line without serving)."""
    (path / "AgentLocator").mkdir(parents=True)
    (path / "AgentLocator" / "__init__.py").write_text("")
    (path / "AgentLocator" / "main.py").write_text(main)
    (path / "gunicorn.py").write_text(SLEEPER)
    return path


def settle(*procs_):
    """Wait until each child has exec'd its interpreter with its argv (psutil sees the final cmdline)."""
    for proc in procs_:
        deadline = time.time() + 10
        while len(psutil.Process(proc.pid).cmdline()) < 2 and time.time() < deadline:
            time.sleep(0.02)


def test_chooses_the_apps_runs_and_never_the_decoys(tmp_path, procs):
    app = checkout(tmp_path / "app")
    other = checkout(tmp_path / "other")
    master = procs([sys.executable, "-m", "gunicorn", APP, "-b", "127.0.0.1:1"], app)
    dev = procs([sys.executable, "-m", "AgentLocator.main"], app)
    script = procs([sys.executable, str(app / "AgentLocator" / "main.py")], app)
    other_app = procs([sys.executable, "-m", "gunicorn", APP, "-b", "127.0.0.1:2"], other)
    web = procs([sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(free_port())], app)
    sleeping = procs([sys.executable, "-c", SLEEPER], app)
    settle(master, dev, script, other_app, web, sleeping)

    found = strays.choose(psutil, APP, str(app))

    chosen = {e["pid"]: e for e in found["stop"]}
    assert set(chosen) == {master.pid, dev.pid, script.pid}
    assert "app spec" in chosen[master.pid]["reason"]
    assert "runs the app module AgentLocator.main" in chosen[dev.pid]["reason"]
    assert "from the app directory" in chosen[script.pid]["reason"]
    for decoy in (other_app, web, sleeping):
        assert decoy.pid not in chosen
    assert 1 not in chosen and os.getpid() not in chosen
    assert found["conflicts"] == []


def test_keeps_the_service_master(tmp_path, procs):
    app = checkout(tmp_path / "app")
    master = procs([sys.executable, "-m", "gunicorn", APP], app)
    dev = procs([sys.executable, "-m", "AgentLocator.main"], app)
    settle(master, dev)
    found = strays.choose(psutil, APP, str(app), keep_pids=[master.pid])
    assert [e["pid"] for e in found["stop"]] == [dev.pid]


def test_a_foreign_port_holder_is_a_conflict_not_a_stray(tmp_path, procs):
    app = checkout(tmp_path / "app")
    port = free_port()
    web = procs([sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(port)], tmp_path)
    deadline = time.time() + 10
    while not any(c.laddr and c.laddr[1] == port and c.status == psutil.CONN_LISTEN for c in psutil.net_connections("tcp")):
        assert time.time() < deadline
        time.sleep(0.05)
    found = strays.choose(psutil, APP, str(app), port=port)
    assert found["stop"] == []
    assert [c["pid"] for c in found["conflicts"]] == [web.pid]
    assert "not this app" in found["conflicts"][0]["reason"]


def test_protected_processes_are_never_chosen(tmp_path, procs):
    app = checkout(tmp_path / "app")
    dev = procs([sys.executable, "-m", "AgentLocator.main"], app)
    settle(dev)
    found = strays.choose(psutil, APP, str(app), protected={dev.pid})
    assert found["stop"] == []


def test_stop_terms_then_kills_and_reports(tmp_path, procs):
    app = checkout(tmp_path / "app", main=IGNORES_TERM)
    polite = procs([sys.executable, str(app / "gunicorn.py")], app)
    stubborn = procs([sys.executable, "-m", "AgentLocator.main"], app)
    settle(polite, stubborn)
    deadline = time.time() + 10
    while not (app / "ready").exists():  # the stubborn one has installed its SIGTERM handler
        assert time.time() < deadline
        time.sleep(0.02)
    chosen = [{"pid": polite.pid, "kind": "dev_server", "cmdline": "polite", "reason": "test"},
              {"pid": stubborn.pid, "kind": "dev_server", "cmdline": "stubborn", "reason": "test"}]
    started = time.time()
    results, survivors = strays.stop(psutil, chosen, grace=1.0)
    assert survivors == []
    by_pid = {r["pid"]: r for r in results}
    assert by_pid[polite.pid]["signals"] == ["TERM"] and by_pid[polite.pid]["outcome"] == "exited after TERM"
    assert by_pid[stubborn.pid]["signals"] == ["TERM", "KILL"]
    assert "killed after" in by_pid[stubborn.pid]["outcome"]
    assert time.time() - started < 8
    assert polite.wait(5) == -signal.SIGTERM and stubborn.wait(5) == -signal.SIGKILL


def test_a_shell_loop_that_restarts_the_app_is_stopped_first(tmp_path, procs):
    app = checkout(tmp_path / "app")
    loop = procs(["bash", "-c", 'while true; do "$0" -m gunicorn AgentLocator.main:app -b 127.0.0.1:1; sleep 1; done',
                  sys.executable], app)
    deadline = time.time() + 10
    while not psutil.Process(loop.pid).children():
        assert time.time() < deadline
        time.sleep(0.02)
    master = psutil.Process(loop.pid).children()[0]
    settle(master)
    found = strays.choose(psutil, APP, str(app))
    chosen = {e["pid"]: e for e in found["stop"]}
    assert loop.pid in chosen and master.pid in chosen
    assert "shell loop" in chosen[loop.pid]["reason"]
    results, survivors = strays.stop(psutil, found["stop"], grace=2.0)
    assert survivors == []
    assert strays.choose(psutil, APP, str(app))["stop"] == []


def test_only_a_real_process_manager_makes_a_conflict(tmp_path, procs):
    script = tmp_path / "supervisord"
    script.write_text(SLEEPER)
    manager = procs([sys.executable, str(script), "-c", "supervisord.conf"], tmp_path)
    mention = procs(["bash", "-c", "sleep 120 # supervisord in a comment", "x"], tmp_path)
    settle(manager, mention)
    assert strays.is_process_manager(psutil, {"kind": "supervisord", "pid": manager.pid})
    assert not strays.is_process_manager(psutil, {"kind": "supervisord", "pid": mention.pid})
    assert strays.is_process_manager(psutil, {"kind": "systemd", "pid": 1})
    assert not strays.is_process_manager(psutil, {"kind": "systemd", "pid": manager.pid})
