"""second_units: which units of the managed unit directory are a second runner of the app, read from real unit files
in a root the test owns, and disabled / enabled again with the real `systemctl --root` (never a live systemd)."""

import shutil
import subprocess

import psutil
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import second_units, service_control

APP = "AgentLocator.main:app"
SYSTEMCTL = shutil.which("systemctl")
pytestmark = pytest.mark.skipif(not SYSTEMCTL, reason="needs systemctl (offline --root use only)")

UNIT = ("[Unit]\nDescription=voice\n[Service]\nWorkingDirectory=%s\nExecStart=/usr/bin/python3 -m gunicorn %s "
        "-b 127.0.0.1:1\n%s[Install]\nWantedBy=multi-user.target\n")


def ctl(*args):
    done = subprocess.run([SYSTEMCTL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    return done.returncode, done.stdout


def setup(tmp_path, units):
    """ROOT/etc/systemd/system with the units, each enabled by the real systemctl; -> (app dir, unit dir, root)."""
    root = tmp_path / "root"
    unit_dir = root / "etc" / "systemd" / "system"
    unit_dir.mkdir(parents=True)
    app = tmp_path / "app"
    app.mkdir()
    for name, (spec, extra) in units.items():
        (unit_dir / name).write_text(UNIT % (app, spec, extra))
        assert ctl("--root=%s" % root, "enable", name)[0] == 0
    return str(app), str(unit_dir), str(root)


def is_enabled(root, unit):
    return ctl("--root=%s" % root, "is-enabled", unit)[1].strip()


def test_the_root_of_a_unit_directory():
    assert second_units.unit_root("/etc/systemd/system") == "/"
    assert second_units.unit_root("/srv/image/etc/systemd/system/") == "/srv/image"
    assert second_units.unit_root("/srv/image/usr/lib/systemd/system") == "/srv/image"
    assert second_units.unit_root("/srv/units") is None
    assert second_units.command("/", "disable", "a.service") == ["disable", "--now", "a.service"]
    assert second_units.command("/img", "disable", "a.service") == ["--root=/img", "disable", "a.service"]


def test_a_second_enabled_unit_is_chosen_disabled_and_enabled_again_never_the_managed_one(tmp_path):
    app, unit_dir, root = setup(tmp_path, {"agentlocator.service": (APP, ""), "voice-old.service": (APP, "")})
    master = {"pid": 4242, "unit": "voice-old.service", "kind": "gunicorn_master", "reason": "run by systemd"}
    chosen, left = second_units.choose(APP, app, unit_dir, "agentlocator.service", [master], ctl)
    assert [(c["unit"], c["state"], c["root"], c["pids"]) for c in chosen] == [("voice-old.service", "enabled", root, [4242])]
    assert left == [] and "systemctl --root=%s disable voice-old.service" % root in chosen[0]["reason"]

    assert second_units.disable(psutil, chosen, ctl, 0) == [] and chosen[0]["done"]
    assert is_enabled(root, "voice-old.service") == "disabled" and is_enabled(root, "agentlocator.service") == "enabled"
    # Disabled: no longer a runner, nothing to do on a second run.
    assert second_units.choose(APP, app, unit_dir, "agentlocator.service", [], ctl) == ([], [])

    assert second_units.enable(chosen[0], ctl).startswith("voice-old.service (")
    assert is_enabled(root, "voice-old.service") == "enabled"


def test_a_unit_that_also_runs_something_else_or_another_app_is_never_touched(tmp_path):
    app, unit_dir, root = setup(tmp_path, {
        "voice-old.service": (APP, "ExecStartPost=/usr/local/bin/metrics-agent --push\n"),
        "shop.service": ("shop.wsgi:app", "")})
    chosen, left = second_units.choose(APP, app, unit_dir, "agentlocator.service", [], ctl)
    assert chosen == [] and len(left) == 1
    assert "voice-old.service" in left[0]["reason"] and "also runs ExecStartPost=/usr/local/bin/metrics-agent" in left[0]["reason"]
    assert "systemctl disable --now voice-old.service" in left[0]["reason"]
    assert is_enabled(root, "voice-old.service") == "enabled" and is_enabled(root, "shop.service") == "enabled"


def test_without_systemctl_or_outside_a_unit_directory_the_unit_is_named_and_refused(tmp_path):
    app, unit_dir, root = setup(tmp_path, {"voice-old.service": (APP, "")})
    chosen, left = second_units.choose(APP, app, unit_dir, "agentlocator.service", [], None)
    assert chosen == [] and "voice-old.service" in left[0]["reason"] and "systemctl is not found" in left[0]["reason"]
    plain = tmp_path / "units"
    shutil.copytree(unit_dir, plain, symlinks=True)
    chosen, left = second_units.choose(APP, app, str(plain), "agentlocator.service", [], ctl)
    assert chosen == [] and "no directory systemd reads" in left[0]["reason"]


def immutable(path, on):
    """chattr +i: even root cannot change the directory, so systemctl really refuses (where the filesystem allows)."""
    return subprocess.run(["chattr", "+i" if on else "-i", str(path)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode == 0


def test_a_systemctl_that_refuses_names_the_unit_and_what_to_do_and_changes_nothing(tmp_path):
    app, unit_dir, root = setup(tmp_path, {"voice-old.service": (APP, "")})
    chosen, dummy = second_units.choose(APP, app, unit_dir, "agentlocator.service", [], ctl)
    wants = tmp_path / "root" / "etc" / "systemd" / "system" / "multi-user.target.wants"
    if not immutable(wants, True):
        pytest.skip("chattr +i is not possible here")
    try:
        with pytest.raises(service_control.ServiceError) as refused:
            second_units.disable(psutil, chosen, ctl, 0)
    finally:
        immutable(wants, False)
    assert "systemctl --root=%s disable voice-old.service refused: " % root in str(refused.value)
    assert "Operation not permitted" in str(refused.value) and "disable voice-old.service yourself" in str(refused.value)
    assert not chosen[0].get("done") and is_enabled(root, "voice-old.service") == "enabled"
