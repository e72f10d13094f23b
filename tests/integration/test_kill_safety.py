"""The strays step of stabilize (the strays role, through ansible-playbook) on a hostile host: processes that
name the app but are not its runs stay alive, the app's real earlier runs are stopped.

Decoys, each real and started by this test in (or for) the app's directory: `python -m celery -A AgentLocator
worker`, `python -m pytest tests/...`, a cron-style `python /APP/tools/backup.py`, a gunicorn of the app spec run
by another user (nobody), and a real gunicorn of the app in another PID and mount namespace (unshare). Every
process is stopped by its PID afterwards (Host.cleanup).
"""

import json
import shutil
import tempfile
from pathlib import Path

import psutil
import pytest

from doctor_run import PYTHON, run_playbook
from gunicorn_service import free_port
from test_stabilize import Host, listening_pid, wait_for

SLEEPER = "import time\ntime.sleep(600)\n"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
PLAYBOOK = """---
- name: The strays step of stabilize
  hosts: target
  gather_facts: false
  tasks:
    - name: Stop the app's earlier runs
      ansible.builtin.include_role:
        name: sre.gunicorn_doctor.strays
      vars:
        strays_app: "{{ doctor_app }}"
        strays_chdir: "{{ doctor_chdir }}"
        strays_grace: 3

    - name: Keep what the role did
      ansible.builtin.copy:
        content: "{{ strays_result | to_json }}"
        dest: "{{ result_file }}"
        mode: "0600"
"""


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    try:
        yield h
    finally:
        h.cleanup()


@pytest.fixture
def shared_dir():
    """World-readable (tmp_path is 0700): the other user's program lives here."""
    path = tempfile.mkdtemp(prefix="kill-safety-")
    Path(path).chmod(0o755)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def settled(pid, program):
    """The process has exec'd `program` (setpriv and unshare exec or fork it)."""
    def check():
        try:
            procs = [psutil.Process(pid)] + psutil.Process(pid).children()
            return next((p.pid for p in procs if p.cmdline()[:1] and Path(p.cmdline()[0]).name.startswith(program)),
                        None)
        except psutil.NoSuchProcess:
            return None
    return wait_for(check, 20, "%d to run %s" % (pid, program))


def mentioners(host, shared):
    """Programs whose command line names the app, or a .py file in its directory, but that are not its runs."""
    app = host.app_dir
    (app / "tests").mkdir(exist_ok=True)
    (app / "tests" / "test_main.py").write_text(SLEEPER)
    (app / "tools").mkdir(exist_ok=True)
    (app / "tools" / "backup.py").write_text(SLEEPER)
    libs = host.tmp / "libs"
    libs.mkdir()
    for name in ("celery", "pytest"):
        (libs / (name + ".py")).write_text(SLEEPER)
    env = {"PYTHONPATH": str(libs)}
    pids = [host.spawn([PYTHON, "-m", "celery", "-A", "AgentLocator", "worker", "-l", "info"], app, env=env),
            host.spawn([PYTHON, "-m", "pytest", "tests/test_main.py", "-q"], app, env=env),
            host.spawn([PYTHON, str(app / "tools" / "backup.py")], "/")]
    (shared / "gunicorn").write_text(SLEEPER)
    pids.append(host.spawn(NOBODY + [PYTHON, str(shared / "gunicorn"), "AgentLocator.main:app", "-b", "127.0.0.1:1"],
                           app))
    for pid in pids:
        settled(pid, "python")
    return pids


def contained_master(host):
    """A real gunicorn of the app, from its directory, in its own PID and mount namespaces (a container)."""
    port = free_port()
    outer = host.spawn(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", PYTHON, "-m", "gunicorn",
                        "AgentLocator.main:app", "-b", "127.0.0.1:%d" % port, "--no-control-socket"], host.app_dir)
    wait_for(lambda: listening_pid(port), 30, "the contained gunicorn")
    return settled(outer, "python")


def test_strays_step_stops_the_apps_runs_and_nothing_that_merely_names_it(host, tmp_path, shared_dir):
    host.decoys += mentioners(host, shared_dir)
    other_user = host.decoys[-1]
    contained = contained_master(host)
    host.decoys.append(contained)
    master = host.wrong_port_master()     # real strays: a gunicorn of the app and a dev server
    host.dev_server()
    playbook, result_file = tmp_path / "strays.yml", tmp_path / "strays.json"
    playbook.write_text(PLAYBOOK)

    run_playbook(str(playbook), tmp_path, {"doctor_chdir": str(host.app_dir), "result_file": str(result_file)})

    host.assert_strays_gone()
    host.assert_decoys_alive()
    done = json.loads(result_file.read_text())
    assert sorted(e["pid"] for e in done["stopped"] if e["kind"] != "gunicorn_worker") == sorted(host.strays)
    assert master in [e["pid"] for e in done["stopped"]]
    skipped = {e["pid"]: e["reason"] for e in done["skipped"]}
    assert "another PID or mount namespace" in skipped[contained]
    assert "runs as uid 65534" in skipped[other_user]
