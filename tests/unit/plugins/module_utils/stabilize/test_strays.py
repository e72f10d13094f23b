"""strays.choose/stop against real processes: the app's earlier runs are chosen with a reason, decoys never."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import strays
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import process

APP = "AgentLocator.main:app"
SLEEPER = "import time\ntime.sleep(120)\n"
IGNORES_TERM = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "open('ready', 'w').close()\ntime.sleep(120)\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        while time.time() < deadline:
            argv = psutil.Process(proc.pid).cmdline()
            if len(argv) >= 2 and os.path.basename(argv[0]) != "setpriv":
                break
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
    chosen = [{"pid": proc.pid, "kind": "dev_server", "cmdline": name, "reason": "test",
               "create_time": psutil.Process(proc.pid).create_time()}
              for proc, name in ((polite, "polite"), (stubborn, "stubborn"))]
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


# --- hostile hosts: processes that name the app but are not its runs ------------------------------------------
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def shared_dir():
    """A world-readable directory (tmp_path is 0700): for what another user must read."""
    path = tempfile.mkdtemp(prefix="strays-shared-")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def fake_module(directory, name):
    """`python -m NAME` runs this: it only sleeps."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / (name + ".py")).write_text(SLEEPER)
    return directory


def test_commands_that_merely_mention_the_app_are_not_its_runs(tmp_path, procs):
    app = checkout(tmp_path / "app")
    (app / "tests").mkdir()
    (app / "tests" / "test_main.py").write_text(SLEEPER)
    (app / "tools").mkdir()
    (app / "tools" / "backup.py").write_text(SLEEPER)
    libs = fake_module(fake_module(tmp_path / "libs", "celery"), "pytest")
    env = dict(os.environ, PYTHONPATH=str(libs))
    celery = subprocess.Popen([sys.executable, "-m", "celery", "-A", "AgentLocator", "worker"], cwd=str(app), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    tests = subprocess.Popen([sys.executable, "-m", "pytest", "tests/test_main.py"], cwd=str(app), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        backup = procs([sys.executable, str(app / "tools" / "backup.py")], "/")  # a cron job: cwd /
        dev = procs([sys.executable, "-u", "-m", "AgentLocator.main"], app)
        script = procs([sys.executable, "AgentLocator/main.py", "--port", "5000"], app)
        settle(celery, tests, backup, dev, script)

        found = strays.choose(psutil, APP, str(app))

        assert set(e["pid"] for e in found["stop"]) == {dev.pid, script.pid}
        strays.stop(psutil, found["stop"], grace=2.0)
        for decoy in (celery, tests, backup):
            assert decoy.poll() is None, "a decoy was stopped: %s" % psutil.Process(decoy.pid).cmdline()
    finally:
        for proc in (celery, tests):
            proc.kill()
            proc.wait()


def test_a_run_of_another_user_is_skipped(tmp_path, procs, shared_dir):
    app = checkout(tmp_path / "app")
    (shared_dir / "gunicorn").write_text(SLEEPER)   # `python .../gunicorn APP`: gunicorn's command line
    theirs = procs(NOBODY + [sys.executable, str(shared_dir / "gunicorn"), APP, "-b", "127.0.0.1:1"], app)
    ours = procs([sys.executable, "-m", "gunicorn", APP, "-b", "127.0.0.1:2"], app)
    settle(theirs, ours)
    assert psutil.Process(theirs.pid).uids().real == 65534

    found = strays.choose(psutil, APP, str(app))

    assert [e["pid"] for e in found["stop"]] == [ours.pid]
    assert found["uid"] == os.stat(str(app)).st_uid == 0
    skipped = {e["pid"]: e["reason"] for e in found["skipped"]}
    assert "runs as uid 65534, not as the service's user" in skipped[theirs.pid]
    # Told the service runs as nobody, only nobody's run is the app's.
    assert [e["pid"] for e in strays.choose(psutil, APP, str(app), uid=65534)["stop"]] == [theirs.pid]


def test_a_run_in_another_pid_namespace_is_skipped(tmp_path, procs):
    app = checkout(tmp_path / "app")
    outer = procs(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                   sys.executable, "-m", "gunicorn", APP, "-b", "127.0.0.1:1"], app)
    deadline = time.time() + 10
    while not psutil.Process(outer.pid).children():
        assert time.time() < deadline
        time.sleep(0.02)
    contained = psutil.Process(outer.pid).children()[0]
    settle(contained)
    try:
        found = strays.choose(psutil, APP, str(app))
        assert found["stop"] == []
        skipped = {e["pid"]: e["reason"] for e in found["skipped"]}
        assert "another PID or mount namespace" in skipped[contained.pid]
    finally:
        contained.kill()


def test_a_run_whose_cwd_cannot_be_read_is_skipped(procs, shared_dir):
    """Run as a non-root user, the module cannot read the cwd of a process that is not dumpable."""
    app = checkout(shared_dir / "app", main="import ctypes, time\nctypes.CDLL(None).prctl(4, 0)  # PR_SET_DUMPABLE\n"
                                            "open('ready', 'w').close()\ntime.sleep(120)\n")
    os.chown(str(app), 65534, 65534)  # the app's directory belongs to the service user, who runs the stray
    hidden = procs(NOBODY + [sys.executable, "-m", "AgentLocator.main"], app)
    deadline = time.time() + 10
    while not (app / "ready").exists():
        assert time.time() < deadline and hidden.poll() is None
        time.sleep(0.02)
    program = ("import json, sys, psutil\nsys.path.insert(0, %r)\n"
               "from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import strays\n"
               "found = strays.choose(psutil, %r, %r)\n"
               "print(json.dumps({k: [e['pid'] for e in found[k]] for k in ('stop', 'skipped')}))\n"
               % (strays_collections(), APP, str(app)))
    done = subprocess.run(NOBODY + [sys.executable, "-c", program], cwd="/", stdout=subprocess.PIPE, text=True,
                          timeout=60, check=True)
    found = json.loads(done.stdout)
    assert hidden.pid not in found["stop"]
    # Where its cwd can be read (as root here), the same process is the app's run and is chosen.
    assert [e["pid"] for e in strays.choose(psutil, APP, str(app))["stop"]] == [hidden.pid]


def strays_collections():
    """The directory holding ansible_collections/sre/gunicorn_doctor for this checkout (see tests/unit/conftest.py)."""
    module = Path(strays.__file__).resolve()
    for path in sys.path:
        link = Path(path) / "ansible_collections" / "sre" / "gunicorn_doctor"
        if link.is_dir() and module.is_relative_to(link.resolve()):
            return path
    raise AssertionError("no collections path for %s" % module)


@pytest.mark.parametrize("argv, expected", [
    (["python3", "-m", "AgentLocator.main"], ("module", "AgentLocator.main")),
    (["python3", "-u", "-mAgentLocator"], ("module", "AgentLocator")),
    (["python3", "-W", "ignore", "-X", "dev", "main.py", "-m", "x"], ("script", "main.py")),
    (["python3", "-Wignore", "--", "-weird.py"], ("script", "-weird.py")),
    (["python3", "-c", "import AgentLocator.main", "AgentLocator/main.py"], ("command", "import AgentLocator.main")),
    (["python3", "-m", "celery", "-A", "AgentLocator", "worker"], ("module", "celery")),
    (["python3", "-"], (None, None)),
])
def test_python_target_is_what_the_interpreter_runs(argv, expected):
    assert process.python_target(argv)[:2] == expected


def wait_child(proc):
    deadline = time.time() + 10
    # One list per look: a child seen by one call may be gone (or not yet exec'd) by the next.
    masters = []
    while not masters:
        assert time.time() < deadline
        time.sleep(0.02)
        masters = [c for c in psutil.Process(proc.pid).children() if "gunicorn" in " ".join(c.cmdline())]
    master = masters[0]
    settle(master)
    return master


def test_a_loop_in_a_script_file_is_proven_by_the_scripts_text(tmp_path, procs):
    app = checkout(tmp_path / "app")
    (app / "keepalive.sh").write_text('while true; do "%s" -m gunicorn %s -b 127.0.0.1:1; sleep 1; done\n' % (
        sys.executable, APP))
    loop = procs(["bash", "keepalive.sh"], app)
    master = wait_child(loop)
    chosen = {e["pid"]: e for e in strays.choose(psutil, APP, str(app))["stop"]}
    assert loop.pid in chosen and master.pid in chosen and "shell loop" in chosen[loop.pid]["reason"]


def test_a_loop_that_also_runs_something_else_is_never_stopped_but_named(tmp_path, procs):
    app = checkout(tmp_path / "app")
    loop = procs(["bash", "-c", 'sleep 120 & while true; do "$0" -m gunicorn AgentLocator.main:app -b 127.0.0.1:1; '
                  'sleep 1; done', sys.executable], app)
    wait_child(loop)
    found = strays.choose(psutil, APP, str(app))
    assert loop.pid not in [e["pid"] for e in found["stop"]]
    conflict = next(c for c in found["conflicts"] if c["pid"] == loop.pid)
    assert "also runs" in conflict["reason"] and "sleep 120" in conflict["reason"]


def test_a_shell_that_does_not_loop_or_name_the_app_is_no_runner(tmp_path, procs):
    app = checkout(tmp_path / "app")
    # An interactive-like shell that started the app once: the master is a stray, the shell is left alone.
    once = procs(["bash", "-c", '"$0" -m gunicorn AgentLocator.main:app -b 127.0.0.1:1; echo done', sys.executable], app)
    master = wait_child(once)
    found = strays.choose(psutil, APP, str(app))
    chosen = [e["pid"] for e in found["stop"]]
    assert master.pid in chosen and once.pid not in chosen and not found["conflicts"]


def test_the_crontab_line_that_starts_a_stopped_loop_is_found_never_edited(tmp_path, procs):
    app = checkout(tmp_path / "app")
    command = 'cd %s && while true; do %s -m gunicorn %s -b 127.0.0.1:1; sleep 1; done' % (app, sys.executable, APP)
    cron = tmp_path / "cron.d"
    cron.mkdir()
    (cron / "voice").write_text("# @reboot root %s\n@reboot root %s\n" % (command, command))
    (cron / "other").write_text("*/5 * * * * root /usr/local/bin/backup.sh\n")
    before = {p.name: p.read_text() for p in cron.iterdir()}
    # As cron runs a line: `sh -c COMMAND`, in the user's home.
    loop = procs(["/bin/sh", "-c", command], tmp_path)
    wait_child(loop)
    found = strays.choose(psutil, APP, str(app))
    stopped, survivors = strays.stop(psutil, found["stop"], grace=2.0)
    assert survivors == [] and loop.pid in [e["pid"] for e in stopped if e["kind"] == "runner_loop"]
    assert strays.crontab_origins(stopped, [str(cron / "*")]) == [
        {"file": str(cron / "voice"), "line": "@reboot root " + command, "pid": loop.pid}]
    assert {p.name: p.read_text() for p in cron.iterdir()} == before
    # Nothing is stopped but a loop: a master alone has no crontab line to name.
    assert strays.crontab_origins([e for e in stopped if e["kind"] != "runner_loop"], [str(cron / "*")]) == []
