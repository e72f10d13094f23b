"""The strays and logs steps of stabilize (their roles, through ansible-playbook) on a hostile host: processes
that name the app but are not its runs stay alive, the app's real earlier runs are stopped; logs that are
symlinks, FIFOs or hard links are refused and names planted in the archive are not written through.

Decoys, each real and started by this test in (or for) the app's directory: `python -m celery -A AgentLocator
worker`, `python -m pytest tests/...`, a cron-style `python /APP/tools/backup.py`, a gunicorn of the app spec run
by another user (nobody), and a real gunicorn of the app in another PID and mount namespace (unshare). Every
process is stopped by its PID afterwards (Host.cleanup).
"""

import json
import os
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


LOGS_PLAYBOOK = """---
- name: The logs step of stabilize
  hosts: target
  gather_facts: false
  tasks:
    - name: Archive old logs
      ansible.builtin.include_role:
        name: sre.gunicorn_doctor.logs
      vars:
        logs_paths: "{{ paths }}"
        logs_archive_dir: "{{ archive_dir }}"
        logs_stamp: 20261125T120000Z

    - name: Keep what the role did
      ansible.builtin.copy:
        content: "{{ logs_result | to_json }}"
        dest: "{{ result_file }}"
        mode: "0600"
"""
SECRET = "root:$6$not-a-real-hash:19000:0:99999:7:::\n"


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


def test_logs_step_refuses_what_is_not_a_log_and_never_writes_through_the_archive(tmp_path):
    shadow = tmp_path / "etc" / "shadow"     # stands for /etc/shadow: root's, outside the logs
    shadow.parent.mkdir()
    shadow.write_text(SECRET)
    logs = tmp_path / "app"
    logs.mkdir()
    (logs / "gunicorn.log").symlink_to(shadow)
    (logs / "console.log").symlink_to("/dev/zero")
    os.mkfifo(str(logs / "nohup.out"))
    (logs / "old.log").write_text("an old run\n")
    target = tmp_path / "archive" / "20261125T120000Z"
    target.mkdir(parents=True)
    for name in ("old.log.gz", "old.log.gz.part", "old.log.gz.1.part"):
        (target / name).symlink_to(shadow)
    playbook, result_file = tmp_path / "logs.yml", tmp_path / "logs.json"
    playbook.write_text(LOGS_PLAYBOOK)
    paths = [str(logs / n) for n in ("gunicorn.log", "console.log", "nohup.out", "old.log")]

    done = run_playbook(str(playbook), tmp_path, {
        "paths": paths, "archive_dir": str(tmp_path / "archive"), "result_file": str(result_file)})

    assert shadow.read_bytes() == SECRET.encode(), "a file outside the logs was written through a planted name"
    result = json.loads(result_file.read_text())
    assert [a["path"] for a in result["archived"]] == [str(logs / "old.log")]
    assert sorted(r["path"] for r in result["refused"]) == sorted(paths[:3])
    assert "not archived: %s" % (logs / "nohup.out") in done.stdout   # a warning names each refused log
    archived = Path(result["archived"][0]["archived_as"])
    assert archived.name == "old.log.gz.1" and not archived.is_symlink() and archived.stat().st_mode & 0o777 == 0o600
