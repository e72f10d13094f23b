"""stabilize.yml on a hostile host: a service that runs as www-data stays www-data (supervisord, standalone,
systemd) and is never made root; a supervisord others can change gets no program; pip runs as the owner of an
app-owned venv; env-file edits show names only and do not follow a planted symlink; names and values cannot
inject into the runner's files; a rollback gives each file back its mode.

The www-data services run a venv of the system Python (the test venv's Python is under root's home) from a
directory in /tmp every user can read; every process a test starts is stopped by its PID.
"""

import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

import venvs
from doctor_run import PYTHON, ROOT, ansible_env, make_app, run_playbook
from gunicorn_service import free_port
from test_stabilize import (Host, alive, assert_idempotent, healthz, listening_pid, recap, role_playbook, serves, stabilize,
                            stabilize_report, stable_200, wait_for)
# The fixture, used by name.
from test_stabilize import host  # noqa: F401  pylint: disable=unused-import

WWW = pwd.getpwnam("www-data")
TOKEN = "tok-5b0e8c1d77aa"
PASSWORD = "pw-Qz81hV0x"
DATABASE_URL = "postgresql://voice:%s@db/x" % PASSWORD


# --- a service user -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def www_python():
    return venvs.shared_venv("gunicorn==25.3.0")


@pytest.fixture
def www_dir():
    """A directory www-data can read (pytest's are root's only), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="gd-www-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def www_host(www_dir, www_python):
    """A host whose app www-data can run: its log directory is www-data's."""
    h = Host(www_dir)
    h.python = www_python
    shutil.chown(h.log.parent, "www-data", "www-data")
    try:
        yield h
    finally:
        h.cleanup()


def proc_uid(pid):
    """The real uid of a process, as /proc says."""
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))


def family_uids(master):
    """The real uid of the master and of each worker (waiting for the first worker)."""
    wait_for(lambda: psutil.Process(master).children(), 20, "a worker of %d" % master)
    return {pid: proc_uid(pid) for pid in [master] + [c.pid for c in psutil.Process(master).children(recursive=True)]}


def as_www(argv):
    return ["setpriv", "--reuid=%d" % WWW.pw_uid, "--regid=%d" % WWW.pw_gid, "--init-groups", "--"] + list(argv)


def run_role(tmp_path, role, role_vars, *extra):
    return subprocess.run(role_playbook(tmp_path, role, role_vars) + list(extra), cwd=ROOT, env=ansible_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300, check=False)


def supervisord_master(supervisord):
    """The pid of the program's master once supervisord says RUNNING."""
    def running():
        status = subprocess.run(supervisord["ctl"] + ["status", "agentlocator"], stdout=subprocess.PIPE, text=True,
                                check=False).stdout
        found = re.search(r"RUNNING\s+pid (\d+)", status)
        return int(found.group(1)) if found else None
    return wait_for(running, 20, "the program RUNNING")


def assert_root_keeps_the_runner(service_dir):
    """The service's user writes only run/: the start script root runs and the service directory stay root's."""
    for path in (service_dir, service_dir / "run.sh"):
        st = path.stat()
        assert st.st_uid == 0 and not st.st_mode & 0o022, "%s: uid %d mode %o" % (path, st.st_uid, st.st_mode)
    assert (service_dir / "run").stat().st_uid == WWW.pw_uid


# --- the service keeps its user ------------------------------------------------------------------------------
def test_supervisord_program_of_www_data_comes_back_as_www_data(www_host, supervisord):
    host = www_host
    wrong = free_port()
    program = supervisord["conf_dir"] / "agentlocator.conf"
    program.write_text(
        "[program:agentlocator]\ncommand=%s -m gunicorn AgentLocator.main:app -b 0.0.0.0:%d --no-control-socket "
        "--error-logfile %s\ndirectory=%s\nuser=www-data\nenvironment=PORT=\"%d\",TWILIO_AUTH_TOKEN=\"%s\"\n"
        "autorestart=true\nstopasgroup=true\n" % (host.python, wrong, host.log, host.app_dir, host.port, TOKEN))
    subprocess.run(supervisord["ctl"] + ["update"], stdout=subprocess.DEVNULL, check=True)
    wait_for(lambda: listening_pid(wrong), 30, "the www-data program on the wrong port")
    assert set(family_uids(supervisord_master(supervisord)).values()) == {WWW.pw_uid}

    out = stabilize(host.tmp, host.vars(doctor_python=host.python))

    assert recap(out)["failed"] == 0
    stable_200(host.port)
    master = supervisord_master(supervisord)
    assert serves(master, host.port) and psutil.Process(master).parent().pid == supervisord["pid"]
    assert set(family_uids(master).values()) == {WWW.pw_uid}
    text = program.read_text()
    assert "\nuser=www-data\n" in text and TOKEN not in text
    # The start script, run as www-data, still reads what the old program gave the app (root's file, its group's).
    assert psutil.Process(master).environ()["TWILIO_AUTH_TOKEN"] == TOKEN
    carried = (host.service_dir / "carried.env").stat()
    assert (carried.st_uid, carried.st_gid, stat.S_IMODE(carried.st_mode)) == (0, WWW.pw_gid, 0o640)
    assert_root_keeps_the_runner(host.service_dir)
    assert stabilize_report(host.tmp)["service"]["run_as"].startswith("www-data:www-data (master ")

    again = stabilize(host.tmp, host.vars(doctor_python=host.python))
    assert_idempotent(again)
    assert supervisord_master(supervisord) == master


def test_standalone_service_of_www_data_is_started_as_www_data_and_never_made_root(www_host):
    host = www_host
    wrong = free_port()
    by_hand = host.spawn(as_www([host.python, "-m", "gunicorn", "AgentLocator.main:app", "-b", "0.0.0.0:%d" % wrong,
                                 "--no-control-socket", "--error-logfile", str(host.log)]), host.app_dir,
                         env={"PORT": str(host.port)})
    wait_for(lambda: listening_pid(wrong), 30, "the www-data master started by hand")
    assert proc_uid(by_hand) == WWW.pw_uid
    host.strays.append(by_hand)
    host_vars = host.vars(doctor_python=host.python, doctor_service_manager="standalone")

    # Made root on purpose: refused before anything is stopped or written.
    refused = run_playbook("stabilize.yml", host.tmp, dict(host_vars, doctor_service_user="root"), check=False)
    assert refused.returncode != 0
    assert re.search(r"Task failed: [^\n]*the service runs as www-data \(master %d[^\n]*\): making it root is refused - "
                     r"unset doctor_service_user" % by_hand, refused.stdout), refused.stdout[-3000:]
    assert alive(by_hand) and not host.service_dir.exists()

    out = stabilize(host.tmp, host_vars)

    assert recap(out)["failed"] == 0
    stable_200(host.port)
    master = host.service_pid()
    assert serves(master, host.port)
    assert set(family_uids(master).values()) == {WWW.pw_uid}
    host.assert_strays_gone()
    script = (host.service_dir / "run.sh").read_text()
    assert "exec setpriv --reuid=%d --regid=%d --init-groups -- %s -m gunicorn" % (WWW.pw_uid, WWW.pw_gid, host.python) \
        in script
    assert (host.service_dir / "run" / "gunicorn.pid").stat().st_uid == WWW.pw_uid
    assert_root_keeps_the_runner(host.service_dir)

    again = stabilize(host.tmp, host_vars)
    assert_idempotent(again)
    assert host.service_pid() == master


def test_systemd_takeover_keeps_user_and_group_and_never_makes_them_root(www_dir, www_python):
    app_dir = make_app(www_dir)
    units = www_dir / "units"
    units.mkdir()
    unit = units / "agentlocator.service"
    unit.write_text("[Unit]\nDescription=voice\n[Service]\nUser=www-data\nGroup=www-data\nWorkingDirectory=%s\n"
                    "ExecStart=%s -m gunicorn AgentLocator.main:app -b 0.0.0.0:5000\n" % (app_dir, www_python))
    before = unit.read_text()
    role_vars = {
        "gunicorn_service_app": "AgentLocator.main:app", "gunicorn_service_chdir": str(app_dir),
        "gunicorn_service_python": www_python, "gunicorn_service_name": "agentlocator",
        "gunicorn_service_dir": str(www_dir / "svc"), "gunicorn_service_manager": "systemd",
        "gunicorn_service_systemd_unit_dir": str(units), "gunicorn_service_start": False,
        "gunicorn_service_environment": {"PORT": "8123"},
    }

    refused = run_role(www_dir, "gunicorn_service", dict(role_vars, gunicorn_service_user="root"))
    assert refused.returncode != 0
    assert "the service runs as www-data (User= of %s): making it root is refused" % unit in refused.stdout
    assert unit.read_text() == before and not (www_dir / "svc").exists()

    done = run_role(www_dir, "gunicorn_service", role_vars, "--diff")

    assert done.returncode == 0, done.stdout[-4000:]
    text = unit.read_text()
    assert "\n[Service]\nType=simple\nUser=www-data\nGroup=www-data\n" in text
    verified = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, check=False)
    assert verified.returncode == 0, verified.stdout


@pytest.mark.parametrize("untrust, reason", [
    (lambda sup: os.chmod(sup["conf"], 0o664), "its config: {conf} is writable by its group root (mode 0664)"),
    (lambda sup: shutil.chown(sup["conf_dir"], "www-data"), "its program directory: {conf_dir} is owned by www-data, not root"),
], ids=["group-writable-config", "program-dir-of-www-data"])
def test_a_supervisord_others_can_change_gets_no_program(host, tmp_path, supervisord, untrust, reason):
    program = supervisord["conf_dir"] / "agentlocator.conf"
    wrong = free_port()
    program.write_text("[program:agentlocator]\ncommand=%s -m gunicorn AgentLocator.main:app -b 0.0.0.0:%d\n"
                       "directory=%s\nenvironment=PORT=\"%d\"\nautorestart=true\nstopasgroup=true\n"
                       % (PYTHON, wrong, host.app_dir, host.port))
    subprocess.run(supervisord["ctl"] + ["update"], stdout=subprocess.DEVNULL, check=True)
    wait_for(lambda: listening_pid(wrong), 30, "the program on the wrong port")
    master = supervisord_master(supervisord)
    stray = host.dev_server()
    untrust(supervisord)
    before = program.read_text()

    done = run_playbook("stabilize.yml", tmp_path, host.vars(), check=False)

    assert done.returncode != 0
    assert "supervisord is not trusted, so no program is written for it: " in done.stdout
    assert reason.format(conf=supervisord["conf"], conf_dir=supervisord["conf_dir"]) in done.stdout, done.stdout[-3000:]
    assert program.read_text() == before and not host.service_dir.exists()
    assert alive(stray) and supervisord_master(supervisord) == master


def test_pip_runs_as_the_owner_of_an_app_owned_venv(www_dir):
    """A venv www-data owns, with a .pth file that notes when its Python runs as root: the pins role reads the
    packages and installs as www-data, and says so."""
    deploy = www_dir / "deploy"   # the app's user deployed its venv here
    deploy.mkdir()
    shutil.chown(deploy, "www-data", "www-data")
    venv = deploy / "venv"
    subprocess.run(as_www(["/usr/bin/python3", "-m", "venv", str(venv)]), check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               stdout=subprocess.PIPE, text=True, check=True).stdout.strip())
    ran_as_root = www_dir / "ran-as-root"
    (site / "zz_root_check.pth").write_text(
        "import os; os.getuid() == 0 and open(%r, 'a').write('%%d\\n' %% os.getpid())\n" % str(ran_as_root))
    shutil.chown(site / "zz_root_check.pth", "www-data", "www-data")
    ran_as_root.unlink(missing_ok=True)  # the setup above ran it as root
    app_dir = make_app(www_dir)

    done = run_role(www_dir, "eventlet_pins", {"eventlet_pins_python": str(python), "eventlet_pins_chdir": str(app_dir),
                                               "eventlet_pins_app": "AgentLocator.main:app"})

    assert done.returncode == 0, done.stdout[-4000:]
    assert "Install the eventlet pins in the app's environment as www-data" in done.stdout
    assert not ran_as_root.exists(), "the venv's Python ran as root: %s" % ran_as_root.read_text()
    installed = list(site.glob("eventlet-*.dist-info"))
    assert installed and (site / "eventlet").stat().st_uid == WWW.pw_uid
    assert all(p.stat().st_uid == WWW.pw_uid for p in site.iterdir())


# --- secrets -------------------------------------------------------------------------------------------------
def test_env_file_edits_show_variable_names_never_values(host, tmp_path):
    wrong = free_port()
    host.env_file.write_text("PORT=%d\nTWILIO_AUTH_TOKEN=%s\nexport DATABASE_URL='%s'\n" % (wrong, TOKEN, DATABASE_URL))
    host.env_file.chmod(0o600)

    out = stabilize(tmp_path, host.vars(doctor_service_manager="standalone", doctor_port=host.port), ["--diff", "-v"])

    assert recap(out)["failed"] == 0
    stable_200(host.port)
    assert TOKEN not in out and PASSWORD not in out
    assert "+PORT=<changed>" in out and " TWILIO_AUTH_TOKEN=<unchanged>" in out and " DATABASE_URL=<unchanged>" in out
    assert host.env_file.read_text() == "PORT=%d\nTWILIO_AUTH_TOKEN=%s\nexport DATABASE_URL='%s'\n" % (
        host.port, TOKEN, DATABASE_URL)
    assert stat.S_IMODE(host.env_file.stat().st_mode) == 0o600
    for report in (tmp_path / "reports").iterdir():
        assert TOKEN not in report.read_text() and PASSWORD not in report.read_text(), report


def test_eventlet_env_edit_shows_names_only_and_never_follows_a_planted_symlink(www_dir, tmp_path):
    env_file = www_dir / "service.env"
    env_file.write_text("TWILIO_AUTH_TOKEN=%s\nEVENTLET_HUB=select\nDATABASE_URL=%s\n" % (TOKEN, DATABASE_URL))
    env_file.chmod(0o600)
    own = www_dir / "own.env"   # the service user's own file, through a link: edited
    own.write_text("EVENTLET_HUB='select'\n")
    shutil.chown(own, "www-data", "www-data")
    (www_dir / "link.env").symlink_to(own)
    role_vars = {"eventlet_env_files": [str(env_file), str(www_dir / "link.env")], "eventlet_env_service_user": "www-data"}

    done = run_role(tmp_path, "eventlet_env", role_vars, "--diff", "-vvv")

    assert done.returncode == 0, done.stdout[-4000:]
    assert TOKEN not in done.stdout and PASSWORD not in done.stdout
    assert "+EVENTLET_HUB=<changed>" in done.stdout and " TWILIO_AUTH_TOKEN=<unchanged>" in done.stdout
    assert env_file.read_text() == "TWILIO_AUTH_TOKEN=%s\nEVENTLET_HUB=selects\nDATABASE_URL=%s\n" % (TOKEN, DATABASE_URL)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert own.read_text() == "EVENTLET_HUB=selects\n" and own.stat().st_uid == WWW.pw_uid
    assert (www_dir / "link.env").is_symlink()

    # www-data planted a link to a file of root's: refused, the file untouched.
    roots = tmp_path / "roots.env"
    roots.write_text("EVENTLET_HUB=select\n")
    (www_dir / "planted.env").symlink_to(roots)
    refused = run_role(tmp_path, "eventlet_env", dict(role_vars, eventlet_env_files=[str(www_dir / "planted.env")]))
    assert refused.returncode != 0
    assert "%s is a symlink to %s, owned by root, not by the service user www-data: refused" % (
        www_dir / "planted.env", roots) in refused.stdout, refused.stdout[-3000:]
    assert roots.read_text() == "EVENTLET_HUB=select\n"


# --- injection -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["agentlocator\ntouch PWNED", "../x", "my app"], ids=["newline", "dotdot", "space"])
def test_a_service_name_that_would_inject_is_refused_before_anything(host, tmp_path, name):
    stray = host.wrong_port_master()

    done = run_playbook("stabilize.yml", tmp_path, host.vars(doctor_service_manager="standalone",
                                                             doctor_service_name=name), check=False)

    assert done.returncode != 0
    # One line, naming the variable (the name itself JSON-quoted, so a line break in it stays on the line); the
    # stabilize_plan action's check step says it ("Task failed"), as the assert it replaced did ("Action failed").
    assert re.search(r'(?:Action|Task) failed: service name "[^\n]*" is not valid: use letters, digits and _ \. @ - only [^\n]* '
                     r'set doctor_service_name\n', done.stdout), done.stdout[-3000:]
    assert alive(stray) and not host.service_dir.exists()
    assert not list(tmp_path.rglob("PWNED")) and not list(host.app_dir.rglob("PWNED"))


def test_percent_and_dollar_are_escaped_the_systemd_way(tmp_path):
    odd = tmp_path / "50%d $HOME"
    app_dir = make_app(odd)
    py_dir = tmp_path / "py%n $PATH"
    py_dir.mkdir()
    (py_dir / "python").symlink_to(PYTHON)
    units = tmp_path / "units"
    units.mkdir()
    greeting = '50%d of $HOME "hi" \\ there'
    role_vars = {
        "gunicorn_service_app": "AgentLocator.main:app", "gunicorn_service_chdir": str(app_dir),
        "gunicorn_service_python": str(py_dir / "python"), "gunicorn_service_name": "agentlocator",
        "gunicorn_service_dir": str(tmp_path / "svc"), "gunicorn_service_manager": "systemd",
        "gunicorn_service_systemd_unit_dir": str(units), "gunicorn_service_start": False,
        "gunicorn_service_log_file": str(tmp_path / "log %i $x" / "gunicorn.log"),
        "gunicorn_service_environment": {"PORT": "8123", "GREETING": greeting},
    }

    done = run_role(tmp_path, "gunicorn_service", role_vars)

    assert done.returncode == 0, done.stdout[-4000:]
    text = (units / "agentlocator.service").read_text()
    assert "\nWorkingDirectory=%s\n" % str(app_dir).replace("%", "%%") in text
    assert '\nEnvironment="GREETING=50%%d of $HOME \\"hi\\" \\\\ there"\n' in text
    # systemd expands no variable in the executable: only % is doubled there; in arguments $ is too.
    assert '\nExecStart="%s" -m gunicorn' % str(py_dir / "python").replace("%", "%%") in text
    assert '--error-logfile "%s"\n' % str(tmp_path / "log %i $x" / "gunicorn.log").replace("%", "%%").replace("$", "$$") in text
    runner_env = (tmp_path / "svc" / "runner.env").read_text()
    assert 'GREETING="50%d of \\$HOME \\"hi\\" \\\\ there"\n' in runner_env
    # systemd-analyze resolves the executable's path: it exists only when % was escaped right.
    verified = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / "agentlocator.service")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert verified.returncode == 0, verified.stdout
    # And sh reads the runner's env file back as the same value.
    echoed = subprocess.run(["sh", "-c", 'set -a; . "$1"; printf %s "$GREETING"', "sh", str(tmp_path / "svc" / "runner.env")],
                            stdout=subprocess.PIPE, text=True, check=True).stdout
    assert echoed == greeting


# --- rollback ------------------------------------------------------------------------------------------------
def slow(text):
    return text.replace('    def healthz():\n', '    def healthz():\n'
                        '        import time\n        time.sleep(float(os.environ.get("HEALTHZ_DELAY", "0")))\n')


def test_rollback_gives_the_start_script_back_its_mode_and_the_old_service_starts(host, tmp_path):
    """A standalone runner with its own start script (mode 0755) serves; stabilize with doctor_timeout=1 fails its
    verify and rolls back: the script is back with mode 0755, and the old service runs again on it."""
    host.app_dir = make_app(tmp_path / "slow", edit=slow)
    host.env_file.write_text("PORT=%d\nHEALTHZ_DELAY=2.2\n" % host.port)
    (host.service_dir / "run").mkdir(parents=True)
    script = host.service_dir / "run.sh"
    script.write_text("#!/bin/sh\nset -a; . %s; set +a\ncd %s\nexec %s -m gunicorn AgentLocator.main:app -b 0.0.0.0:$PORT "
                      "--timeout 30 --no-control-socket --daemon --pid %s --error-logfile %s\n" % (
                          host.env_file, host.app_dir, PYTHON, host.service_dir / "run" / "gunicorn.pid", host.log))
    script.chmod(0o755)
    before = script.read_text()
    subprocess.run([str(script)], check=True, timeout=30)
    wait_for(lambda: healthz(host.port) == 200, 30, "the old runner's first 200")

    done = run_playbook("stabilize.yml", tmp_path, host.vars(doctor_service_manager="standalone", doctor_timeout=1,
                                                             doctor_verify_timeout=8), check=False)

    assert done.returncode != 0
    report = stabilize_report(tmp_path)
    assert report["result"] == "rolled_back" and "runs again on its old files" in report["summary"], report["summary"]
    assert str(script) in report["rollback"]["restored"]
    assert script.read_text() == before and stat.S_IMODE(script.stat().st_mode) == 0o755
    master = host.service_pid()
    assert "--timeout 30" in " ".join(psutil.Process(master).cmdline())
    wait_for(lambda: healthz(host.port) == 200, 30, "the old service's 200 after the rollback")
