"""app_runner: whom the app's code runs as, with what environment, and that nothing of a run outlives it.

Real processes, real users (Debian's www-data), real unit and program files; root is needed to switch users."""

import os
import pwd
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import app_runner

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
WWW = pwd.getpwnam("www-data")
APP = "AgentLocator.main:app"


def unit_dir(tmp_path, chdir, service_lines):
    units = tmp_path / "units"
    units.mkdir()
    (units / "voice.service").write_text("[Service]\nWorkingDirectory=%s\nExecStart=/srv/venv/bin/gunicorn %s\n%s" % (
        chdir, APP, service_lines))
    return units


def identity_from_files(tmp_path, chdir, unit_lines=None, program_lines=None, masters=()):
    units = unit_dir(tmp_path, chdir, unit_lines) if unit_lines is not None else tmp_path / "no-units"
    conf = tmp_path / "program.conf"
    conf.write_text("[program:voice]\ncommand=gunicorn %s\ndirectory=%s\n%s" % (APP, chdir, program_lines or ""))
    runners = app_runner.find_runners(APP, str(chdir), unit_dirs=[str(units)],
                                      conf_globs=[str(conf)] if program_lines is not None else [str(tmp_path / "none")])
    return app_runner.service_identity(psutil, list(masters), runners, str(chdir)), runners


def test_the_units_user_and_group(tmp_path):
    ident, runners = identity_from_files(tmp_path, tmp_path, "User=www-data\nGroup=nogroup\n")
    nogroup = 65534
    assert (ident["name"], ident["uid"], ident["gid"]) == ("www-data", WWW.pw_uid, nogroup)
    assert ident["groups"] == sorted(set(os.getgrouplist("www-data", nogroup)))
    assert ident["source"] == "from User= of %s" % runners[0]["source"]
    assert app_runner.describe(ident) == "www-data (uid %d) from User= of %s" % (WWW.pw_uid, runners[0]["source"])


def test_a_drop_in_sets_the_user(tmp_path):
    ident, runners = identity_from_files(tmp_path, tmp_path, "User=root\n")
    dropin = tmp_path / "units" / "voice.service.d"
    dropin.mkdir()
    (dropin / "user.conf").write_text("[Service]\nUser=www-data\n")
    runners = app_runner.find_runners(APP, str(tmp_path), unit_dirs=[str(tmp_path / "units")], conf_globs=["/none"])
    assert app_runner.service_identity(psutil, [], runners, str(tmp_path))["uid"] == WWW.pw_uid


def test_the_supervisord_programs_user(tmp_path):
    ident, runners = identity_from_files(tmp_path, tmp_path, program_lines="user=www-data\n")
    assert (ident["uid"], ident["gid"]) == (WWW.pw_uid, WWW.pw_gid)
    assert ident["source"] == "from user= of %s [program:voice]" % (tmp_path / "program.conf")


def test_an_unknown_runner_user_falls_back_to_the_directory_owner(tmp_path):
    os.chown(tmp_path, WWW.pw_uid, WWW.pw_gid)
    ident = identity_from_files(tmp_path, tmp_path, "User=no-such-user-here\n")[0]
    assert (ident["uid"], ident["gid"], ident["groups"]) == (WWW.pw_uid, WWW.pw_gid, [WWW.pw_gid])
    assert ident["source"] == "from the owner of %s (no master runs, no runner names a user)" % tmp_path


def test_a_root_owned_directory_with_no_runner_is_root(tmp_path):
    ident = identity_from_files(tmp_path, tmp_path)[0]
    assert (ident["name"], ident["uid"]) == ("root", 0)


def test_the_running_master_wins_over_the_runner_files(tmp_path):
    master = subprocess.Popen(["setpriv", "--reuid=www-data", "--regid=www-data", "--init-groups", "sleep", "30"])
    try:
        wait_for_uid(master.pid, WWW.pw_uid)
        ident = identity_from_files(tmp_path, tmp_path, "User=root\n",
                                    masters=[{"pid": master.pid, "workers": []}])[0]
    finally:
        master.kill()
        master.wait()
    assert (ident["uid"], ident["gid"], ident["groups"]) == (WWW.pw_uid, WWW.pw_gid, [WWW.pw_gid])
    assert ident["source"] == "from the master %d" % master.pid


def wait_for_uid(pid, uid):
    """Until setpriv has exec'd its command: then uid, gid and groups are all final (not only the uid)."""
    deadline = time.time() + 20
    while psutil.Process(pid).uids().effective != uid or psutil.Process(pid).name() == "setpriv":
        assert time.time() < deadline
        time.sleep(0.02)


def test_child_env_is_the_services_without_login_or_ansible_variables():
    ident = app_runner.identity(WWW.pw_uid, WWW.pw_gid, [], "test")
    env = app_runner.child_env({"DATABASE_URL": "postgres://db", "SSH_AUTH_SOCK": "/tmp/agent", "SUDO_USER": "alice",
                                "ANSIBLE_MODULE_ARGS": "{}", "GUNICORN_CMD_ARGS": "--daemon", "HOME": "/root",
                                "LANG": "de_DE.UTF-8"}, ident, "/tmp/private")
    assert env == {"DATABASE_URL": "postgres://db", "LANG": "de_DE.UTF-8", "PATH": app_runner.DEFAULT_PATH,
                   "HOME": "/tmp/private", "TMPDIR": "/tmp/private/tmp", "USER": "www-data", "LOGNAME": "www-data",
                   "PYTHONDONTWRITEBYTECODE": "1"}


def test_a_run_as_www_data_with_a_private_home_removed_afterwards():
    ident = app_runner.identity(WWW.pw_uid, WWW.pw_gid, [WWW.pw_gid], "test", name="www-data")
    with app_runner.AppRun(ident, {"SSH_AUTH_SOCK": "/tmp/agent", "KEPT": "1"}, 10, psutil) as run:
        run.start(["/bin/sh", "-c", 'id -u; id -G; stat -c "%a %u" "$HOME" "$TMPDIR"; env'])
        assert run.wait_exit(run.deadline)
        run.stop()
    out = list(run.lines)
    assert out[:4] == [str(WWW.pw_uid), str(WWW.pw_gid), "700 %d" % WWW.pw_uid, "700 %d" % WWW.pw_uid]
    env = dict(line.split("=", 1) for line in out[4:] if "=" in line)
    assert env["KEPT"] == "1" and "SSH_AUTH_SOCK" not in env and env["HOME"] == run.home
    assert not os.path.exists(run.home)
    assert run.exit_code == 0


# Ignores TERM, and leaves behind a helper that left the session and holds the output pipe.
STUBBORN = textwrap.dedent("""\
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("x" * (3 << 20), flush=True)  # one line of 3 MiB
    child = os.fork()
    if child == 0:
        os.setsid()
        helper = subprocess.Popen(["sleep", "300"])
        print("helper", helper.pid, flush=True)
        os._exit(0)
    os.waitpid(child, 0)
    time.sleep(300)
    """)


def test_a_stubborn_run_is_killed_whole_at_the_deadline_and_its_output_bounded():
    started = time.time()
    with app_runner.AppRun(None, {}, 1.0, psutil) as run:
        run.start([sys.executable, "-c", STUBBORN])
        assert not run.wait_exit(run.deadline)
        run.stop(grace=0.2)
    assert time.time() - started < 10
    assert run.exit_code == -signal.SIGKILL
    helper = int(next(line.split()[1] for line in run.lines if line.startswith("helper ")))
    assert not psutil.pid_exists(helper) or psutil.Process(helper).status() == psutil.STATUS_ZOMBIE
    assert max(len(line) for line in run.lines) <= app_runner.MAX_LINE
    assert sum(len(line) for line in run.lines) <= app_runner.MAX_OUTPUT + app_runner.MAX_LINE
