"""Diagnosis runs the app's code confined: as the service's user, with the service's environment only, a private
HOME and TMPDIR, no gunicorn config it does not control, and nothing of it left running afterwards.

A real non-root user (created here, removed afterwards), real gunicorn services running as that user, apps
whose import writes down who imported them, starts helpers or ships a hook in ./gunicorn.conf.py."""

import glob
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

import venvs
from doctor_run import diagnose, layer, make_app
from gunicorn_service import free_port

USER = "doctor-sbx"
# What Ansible's own process carries and no app code may see.
LEAKS = {"SSH_AUTH_SOCK": "/tmp/doctor-sbx-agent.sock", "SUDO_USER": "alice", "SUDO_UID": "1000",
         "ANSIBLE_DOCTOR_SBX_LEAK": "1"}

# Each process that imports the app writes one JSON file to $DOCTOR_MARKS: who it ran as and what it saw.
IMPORT_MARK = '''
import json as _json, sys as _sys, tempfile as _tempfile
with open(os.path.join(os.environ["DOCTOR_MARKS"], "import-%d.json" % os.getpid()), "w") as _f:
    _json.dump({"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
                "home": os.environ.get("HOME"), "tmp": _tempfile.gettempdir(), "env": sorted(os.environ),
                "argv": _sys.argv}, _f)
'''

# A helper started at import: one stays in the session, one leaves it (double fork + setsid).
HELPERS = '''
import subprocess as _sp
_plain = _sp.Popen(["sleep", "120"])
if os.fork() == 0:
    os.setsid()
    _escapee = _sp.Popen(["sleep", "121"])
    with open(os.path.join(os.environ["DOCTOR_MARKS"], "helper-%d" % _escapee.pid), "w"):
        pass
    os._exit(0)
with open(os.path.join(os.environ["DOCTOR_MARKS"], "helper-%d" % _plain.pid), "w"):
    pass
'''

HOOKED_CONFIG = '''import os
daemon = True
pidfile = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.pid")
def on_starting(server):
    with open(os.path.join(os.environ["DOCTOR_MARKS"], "hook-%d" % os.getpid()), "w"):
        pass
'''


@pytest.fixture(scope="module")
def service_user():
    """A real system user for the service; removed afterwards."""
    created = subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "--shell",
                              "/usr/sbin/nologin", USER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             check=False)
    assert created.returncode in (0, 9), created.stdout  # 9: left over from an interrupted run
    try:
        yield pwd.getpwnam(USER)
    finally:
        subprocess.run(["userdel", USER], check=False)


@pytest.fixture(scope="module")
def app_python():
    """A venv the service user can run (the test venv's Python lives under root's home)."""
    return venvs.shared_venv("gunicorn==25.3.0")


@pytest.fixture
def shared(service_user):
    """A directory the service user can reach (pytest's tmp_path is 0700 root)."""
    base = Path(tempfile.mkdtemp(prefix="doctor-sbx-", dir="/tmp"))
    os.chmod(base, 0o755)
    marks = base / "marks"
    marks.mkdir()
    os.chmod(marks, 0o1777)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def app_in(shared, edit, owner=None):
    app_dir = make_app(shared, edit)
    if owner is not None:
        for root, dirs, files in os.walk(app_dir):
            for name in [root] + [os.path.join(root, n) for n in dirs + files]:
                os.chown(name, owner.pw_uid, owner.pw_gid)
    return app_dir


def with_marks(text, extra=IMPORT_MARK):
    return text.replace("import os\n", "import os\n" + extra, 1)


def imports(shared):
    """-> {'dry import' | 'preload boot' | 'service': [mark, ...]} from the marks the imports left."""
    found = {}
    for path in glob.glob(str(shared / "marks" / "import-*.json")):
        with open(path) as f:
            mark = json.load(f)
        argv = " ".join(mark["argv"])
        kind = "dry import" if mark["argv"][0] == "-c" else "preload boot" if "--preload" in argv else "service"
        found.setdefault(kind, []).append(mark)
    return found


def assert_confined(mark, user):
    assert (mark["uid"], mark["gid"], mark["groups"]) == (user.pw_uid, user.pw_gid, [user.pw_gid]), mark
    assert mark["home"].startswith("/tmp/") and mark["tmp"].startswith(mark["home"]), mark
    assert not os.path.exists(mark["home"]), "the private HOME %s was left behind" % mark["home"]
    leaked = [k for k in mark["env"] if k == "SSH_AUTH_SOCK" or k.startswith(("SUDO_", "ANSIBLE_"))]
    assert leaked == [], leaked
    assert "GUNICORN_CMD_ARGS" not in mark["env"]


def check(report, name, layer_name="boot"):
    return next(c for c in layer(report, layer_name)["checks"] if c["name"] == name)


def as_user(user):
    return ["setpriv", "--reuid=%d" % user.pw_uid, "--regid=%d" % user.pw_gid, "--init-groups"]


def user_log(shared, user):
    log = shared / "gunicorn.log"
    log.touch()
    os.chown(log, user.pw_uid, user.pw_gid)
    return log


def test_app_code_runs_as_the_masters_user(services, shared, tmp_path, service_user, app_python, monkeypatch):
    app_dir = app_in(shared, with_marks)
    port = free_port()
    service = services(app_dir, user_log(shared, service_user), bind="127.0.0.1:%d" % port,
                       env={"PORT": str(port), "DOCTOR_MARKS": str(shared / "marks")}, wrapper=as_user(service_user),
                       python=app_python)
    for name, value in LEAKS.items():  # Ansible's environment, not the service's
        monkeypatch.setenv(name, value)

    report = diagnose(tmp_path, {"doctor_chdir": str(app_dir), "doctor_log_file": str(shared / "gunicorn.log"),
                                 "doctor_python": app_python, "doctor_preload_boot": "always"})[0]

    seen = imports(shared)
    assert set(seen) == {"service", "dry import", "preload boot"}, seen
    for kind in ("dry import", "preload boot"):
        for mark in seen[kind]:
            assert_confined(mark, service_user)
    who = "as %s (uid %d) from the master %d" % (USER, service_user.pw_uid, service.pid)
    assert who in check(report, "dry import")["detail"]
    assert who in check(report, "preload boot")["detail"]
    assert check(report, "preload boot")["status"] == "pass"


def without_master(shared, app_dir, app_python, env_lines="", **extra):
    """The inputs of diagnose for an app that is not running: its env file gives it DOCTOR_MARKS."""
    env_file = shared / "service.env"
    env_file.write_text("DOCTOR_MARKS=%s\n%s" % (shared / "marks", env_lines))
    return dict({"doctor_chdir": str(app_dir), "doctor_env_file": str(env_file), "doctor_python": app_python,
                 "doctor_port": free_port()}, **extra)


def test_without_a_master_app_code_runs_as_the_directory_owner(
        shared, tmp_path, service_user, app_python, monkeypatch):
    app_dir = app_in(shared, with_marks, owner=service_user)
    for name, value in LEAKS.items():
        monkeypatch.setenv(name, value)

    report = diagnose(tmp_path, without_master(shared, app_dir, app_python, doctor_preload_boot="always"))[0]

    seen = imports(shared)
    assert set(seen) == {"dry import", "preload boot"}, seen
    for mark in seen["dry import"] + seen["preload boot"]:
        assert_confined(mark, service_user)
    who = "as %s (uid %d) from the owner of %s" % (USER, service_user.pw_uid, app_dir)
    assert who in check(report, "dry import")["detail"]


def helper_pids(shared):
    return [int(os.path.basename(p).split("-")[1]) for p in glob.glob(str(shared / "marks" / "helper-*"))]


def sleeping(pid):
    try:
        proc = psutil.Process(pid)
        return proc.name() == "sleep" and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_helpers_started_at_import_neither_hold_the_probe_nor_survive(shared, tmp_path, service_user, app_python):
    app_dir = app_in(shared, lambda text: with_marks(text, HELPERS), owner=service_user)
    started = time.time()
    try:
        report = diagnose(tmp_path, without_master(shared, app_dir, app_python, doctor_preload_boot="always",
                                                   doctor_boot_timeout=10))[0]
        elapsed = time.time() - started
        pids = helper_pids(shared)
        # The dry import and the preload boot each started one helper in their session and one that left it.
        assert len(pids) == 4, pids
        assert [pid for pid in pids if sleeping(pid)] == []
        # Bounded by doctor_boot_timeout plus the grace to stop, not by the helpers' 120 s.
        assert elapsed < 60, elapsed
        assert check(report, "dry import")["status"] == "pass"
        assert check(report, "preload boot")["status"] == "pass"
    finally:
        for pid in helper_pids(shared):
            if sleeping(pid):
                psutil.Process(pid).kill()


def test_preload_boot_ignores_the_apps_gunicorn_config_and_cmd_args(shared, tmp_path, service_user, app_python):
    app_dir = app_in(shared, None, owner=service_user)
    (app_dir / "gunicorn.conf.py").write_text(HOOKED_CONFIG)
    foreign_pid = shared / "cmd-args.pid"
    try:
        report = diagnose(tmp_path, without_master(shared, app_dir, app_python,
                                                   "GUNICORN_CMD_ARGS='--daemon --pid %s'\n" % foreign_pid,
                                                   doctor_preload_boot="always"))[0]
        assert glob.glob(str(shared / "marks" / "hook-*")) == [], "the app's on_starting hook ran"
        assert not foreign_pid.exists() and not (app_dir / "config.pid").exists()
        preload = check(report, "preload boot")
        assert preload["status"] == "pass", preload  # it stayed in the foreground, answered and was stopped
    finally:
        for pidfile in (foreign_pid, app_dir / "config.pid"):
            if pidfile.exists():  # today's code: a daemonized gunicorn left behind
                psutil.Process(int(pidfile.read_text())).kill()


def test_a_cautious_user_turns_both_off(shared, tmp_path, service_user, app_python):
    app_dir = app_in(shared, with_marks, owner=service_user)

    # Down, and meant for eventlet (not installed in its venv): both boots would run if they were on.
    report = diagnose(tmp_path, without_master(shared, app_dir, app_python, doctor_worker_class="eventlet",
                                               doctor_preload_boot="never", doctor_dry_import=False))[0]

    assert imports(shared) == {}
    assert check(report, "dry import") == {"name": "dry import", "status": "skip",
                                           "detail": "turned off (doctor_dry_import=false): the app was not imported"}
    assert check(report, "preload boot") == {"name": "preload boot", "status": "skip",
                                             "detail": "turned off (doctor_preload_boot=never): the app was not booted"}
    assert check(report, "eventlet boot", "eventlet") == {
        "name": "eventlet boot", "status": "skip",
        "detail": "turned off (doctor_preload_boot=never): the app was not booted with -k eventlet"}
