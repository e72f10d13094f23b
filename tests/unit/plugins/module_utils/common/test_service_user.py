"""plugins/module_utils/common/service_user.py: who the service runs as, whether root may trust a path, and running a
command as the service's user - on real files and the host's real www-data."""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import service_user

WWW = pwd.getpwnam("www-data")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="owners and other users need root")


def acct(user):
    return dict(service_user.account(user), source="test")


# --- decide -------------------------------------------------------------------------------------------------
def test_the_running_master_decides_and_a_non_root_runner_file_wins_over_a_root_master():
    www, root = acct("www-data"), acct("root")
    assert service_user.decide(www, None, None) == (www, www)
    # A unit that says www-data with a master found running as root (started by hand): never more privileged.
    assert service_user.decide(root, www, None) == (www, www)
    assert service_user.decide(root, None, None) == (None, root)      # root, as before: no user directive
    assert service_user.decide(None, None, www) == (www, www)         # only a master the manager does not run
    assert service_user.decide(None, None, None) == (None, None)      # nothing says: as is


def test_an_override_may_pick_another_user_but_never_make_a_non_root_service_root():
    www = acct("www-data")
    run_as, found = service_user.decide(None, None, None, user="www-data", group="nogroup")
    assert (run_as["user"], run_as["group"], found) == ("www-data", "nogroup", None)
    assert service_user.decide(www, None, None, user="nobody")[0]["user"] == "nobody"
    for user in ("root", "0"):
        with pytest.raises(ValueError, match=r"the service runs as www-data \(test\): making it root is refused"):
            service_user.decide(www, None, None, user=user)
    with pytest.raises(ValueError, match="user no-such-user does not exist"):
        service_user.decide(None, None, None, user="no-such-user")
    with pytest.raises(ValueError, match="not a valid user name"):
        service_user.decide(None, None, None, user="www-data\nUser=root")


def test_a_runner_file_naming_an_unknown_user_is_not_root():
    ghost = service_user.from_names("ghost-user", None)
    assert ghost["uid"] is None and not service_user.is_root(ghost)
    with pytest.raises(ValueError, match="making it root is refused"):
        service_user.decide(None, dict(ghost, source="User="), None, user="root")


# --- what root trusts ---------------------------------------------------------------------------------------
def test_unsafe_reason_names_the_path_another_user_can_change(tmp_path):
    conf = tmp_path / "supervisord.conf"
    conf.write_text("[supervisord]\n")
    conf.chmod(0o644)
    assert service_user.unsafe_reason(str(conf)) is None
    conf.chmod(0o664)
    assert service_user.unsafe_reason(str(conf)) == "%s is writable by its group root (mode 0664)" % conf
    conf.chmod(0o644)
    shutil.chown(tmp_path, "www-data")
    assert service_user.unsafe_reason(str(conf)) == "%s is owned by www-data, not root" % tmp_path
    shutil.chown(tmp_path, "root")
    # A link through a directory another user owns is as unsafe as the file it points at.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    shutil.chown(theirs, "www-data")
    (tmp_path / "link.conf").symlink_to(theirs / "x.conf")
    (theirs / "x.conf").write_text("")
    assert "owned by www-data" in service_user.unsafe_reason(str(tmp_path / "link.conf"))
    # /tmp is world-writable but sticky: others cannot replace root's entries in it.
    assert service_user.unsafe_reason("/tmp") is None


@pytest.fixture
def open_dir():
    """A directory every user may traverse (pytest's tmp dirs are root's only)."""
    path = tempfile.mkdtemp(prefix="gd-unit-", dir="/tmp")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_can_access_reads_the_mode_bits_along_the_path(open_dir):
    www = service_user.account("www-data")
    app = open_dir / "app"
    app.mkdir()
    app.chmod(0o750)
    assert not service_user.can_access(www, str(app), os.R_OK | os.X_OK)
    shutil.chown(app, group="www-data")
    assert service_user.can_access(www, str(app), os.R_OK | os.X_OK)
    assert service_user.can_access(None, "/root", os.R_OK)            # root may
    # What the mode bits say is what www-data really gets.
    done = subprocess.run(["setpriv", "--reuid=%d" % WWW.pw_uid, "--regid=%d" % WWW.pw_gid, "--init-groups", "--",
                           "ls", str(app)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    assert done.returncode == 0


def test_venv_owner_is_the_user_who_can_write_the_venv(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "bin" / "python").symlink_to(sys.executable)
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    assert service_user.venv_owner(str(venv / "bin" / "python")) == (None, None)
    site.chmod(0o777)
    owner, warning = service_user.venv_owner(str(venv / "bin" / "python"))
    assert owner is None and "is writable by others" in warning
    site.chmod(0o755)
    shutil.chown(site, "www-data", "www-data")
    owner, warning = service_user.venv_owner(str(venv / "bin" / "python"))
    assert (owner["user"], owner["uid"], warning) == ("www-data", WWW.pw_uid, None)


def test_run_kwargs_drop_roots_agent_and_ansible_variables(monkeypatch):
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    monkeypatch.setenv("ANSIBLE_CONFIG", "/root/ansible.cfg")
    monkeypatch.setenv("PIP_INDEX_URL", "https://pypi.example/simple")
    kwargs = service_user.run_kwargs(service_user.account("www-data"))
    assert (kwargs["user"], kwargs["group"]) == (WWW.pw_uid, WWW.pw_gid)
    assert kwargs["env"]["HOME"] == WWW.pw_dir and kwargs["env"]["PIP_INDEX_URL"] == "https://pypi.example/simple"
    assert "SSH_AUTH_SOCK" not in kwargs["env"] and "ANSIBLE_CONFIG" not in kwargs["env"]
    out = subprocess.run(["id", "-u"], stdout=subprocess.PIPE, text=True, check=True, **kwargs).stdout
    assert int(out) == WWW.pw_uid
    assert service_user.run_kwargs(None) == {}
