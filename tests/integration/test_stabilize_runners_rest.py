"""The rest of stabilize's runners (issue 14 point 4): a failed run gives back the second supervisord program it
disabled; a second systemd unit of the app is disabled with the real `systemctl --root` in a root the test owns
(systemd never runs here: the live `systemctl disable --now` path is not exercised), or named and left alone when
it also runs something else or systemctl cannot do it; a cron `@reboot` loop is stopped by PID and its crontab line
named, never edited. Every process a test starts is stopped by its PID.
"""

import re
import shutil
import subprocess

import pytest

from doctor_run import PYTHON, ROOT, ansible_env, make_app, run_playbook
from gunicorn_service import free_port
from test_stabilize import (alive, assert_idempotent, healthz, listening_pid, recap, role_playbook, stabilize,
                            stabilize_report, tree_digest, wait_for)
from test_stabilize_runners import app_masters, assert_one_master_stays, program_pid
# The fixture, used by name.
from test_stabilize import host  # noqa: F401  pylint: disable=unused-import

SYSTEMCTL = shutil.which("systemctl")


# --- 1. the rollback gives back the second program it disabled ------------------------------------------------
def slow_healthz(text):
    return text.replace('    def healthz():\n', '    def healthz():\n'
                        '        import time\n        time.sleep(float(os.environ.get("HEALTHZ_DELAY", "0")))\n')


def test_a_failed_run_gives_back_the_second_program_it_disabled(host, tmp_path, supervisord):
    """No worse than it was found: the run disables a second program of the app, then fails verify (doctor_timeout=1
    kills every slow /healthz request's worker); the rollback puts the managed program back and the second program's
    file back under its name, and supervisord runs it again."""
    host.app_dir = make_app(tmp_path / "slow", edit=slow_healthz)
    program = ("[program:%s]\ncommand=%s -m gunicorn AgentLocator.main:app -b 0.0.0.0:%d --timeout 30 --no-control-socket\n"
               "directory=%s\nenvironment=HEALTHZ_DELAY=\"%s\"\nautorestart=true\nstopasgroup=true\n")
    second_port = free_port()
    managed = supervisord["conf_dir"] / "agentlocator.conf"
    managed.write_text(program % ("agentlocator", PYTHON, host.port, host.app_dir, "2.2"))
    second = supervisord["conf_dir"] / "agentlocator-old.conf"
    second.write_text(program % ("agentlocator-old", PYTHON, second_port, host.app_dir, "0"))
    before = {managed: managed.read_text(), second: second.read_text()}
    subprocess.run(supervisord["ctl"] + ["update"], stdout=subprocess.DEVNULL, check=True)
    wait_for(lambda: program_pid(supervisord, "agentlocator") and program_pid(supervisord, "agentlocator-old")
             and healthz(host.port) == 200 and healthz(second_port) == 200, 30, "both programs serving")
    second_master = program_pid(supervisord, "agentlocator-old")

    done = run_playbook("stabilize.yml", tmp_path, host.vars(doctor_timeout=1, doctor_verify_timeout=8), check=False)

    assert done.returncode != 0 and recap(done.stdout)["failed"] == 1
    report = stabilize_report(tmp_path)
    assert report["result"] == "rolled_back", report["summary"]
    disabled = [a for a in report["actions"] if a["action"] == "disabled supervisord program"]
    assert disabled and disabled[0]["target"].startswith("agentlocator-old ("), report["actions"]
    assert not alive(second_master), "the run did not disable the second program before it failed"
    assert "enabled again: agentlocator-old (%s)" % second in report["summary"], report["summary"]
    assert {managed: managed.read_text(), second: second.read_text()} == before
    assert not (supervisord["conf_dir"] / "agentlocator-old.conf.disabled-by-gunicorn-doctor").exists()
    # supervisord runs the second program again, on its port, as it was found.
    wait_for(lambda: program_pid(supervisord, "agentlocator-old") and healthz(second_port) == 200, 30,
             "the second program serving again")
    assert program_pid(supervisord, "agentlocator") and healthz(host.port) == 200


# --- 2. a second systemd unit ---------------------------------------------------------------------------------------
UNIT = ("[Unit]\nDescription=%s\n[Service]\nWorkingDirectory=%s\nExecStart=%s -m gunicorn AgentLocator.main:app "
        "-b 127.0.0.1:%d --no-control-socket\n%s[Install]\nWantedBy=multi-user.target\n")


def systemctl(root, *args):
    return subprocess.run([SYSTEMCTL, "--root=%s" % root] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False).stdout.strip()


def unit_root(host, extra="", managed=True):
    """ROOT/etc/systemd/system the test owns: the service's unit (`managed`) and a second unit of the app, enabled by
    the real systemctl; the second unit's master runs (started as its ExecStart would, by the test: no systemd here)."""
    root = host.tmp / "root"
    unit_dir = root / "etc" / "systemd" / "system"
    unit_dir.mkdir(parents=True)
    units = ["voice-old.service"]
    if managed:
        (unit_dir / "agentlocator.service").write_text(UNIT % ("voice", host.app_dir, PYTHON, host.port, ""))
        units.append("agentlocator.service")
    port = free_port()
    (unit_dir / "voice-old.service").write_text(UNIT % ("voice, the old unit", host.app_dir, PYTHON, port, extra))
    for unit in units:
        systemctl(root, "enable", unit)
        assert systemctl(root, "is-enabled", unit) == "enabled"
    master = host.spawn([PYTHON, "-m", "gunicorn", "AgentLocator.main:app", "-b", "127.0.0.1:%d" % port,
                         "--no-control-socket"], host.app_dir)
    wait_for(lambda: listening_pid(port), 20, "the old unit's master")
    return root, unit_dir, master


def strays_role(host, unit_dir, **extra):
    role_vars = dict({"strays_app": "AgentLocator.main:app", "strays_chdir": str(host.app_dir), "strays_grace": 5,
                      "strays_systemd_unit": "agentlocator.service", "strays_systemd_unit_dir": str(unit_dir)}, **extra)
    return subprocess.run(role_playbook(host.tmp, "strays", role_vars), cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=180, check=False)


@pytest.mark.skipif(not SYSTEMCTL, reason="needs systemctl (used offline, with --root)")
def test_a_second_systemd_unit_of_the_app_is_disabled_and_its_master_stopped(host):
    root, unit_dir, master = unit_root(host)
    unit_text = (unit_dir / "voice-old.service").read_text()

    done = strays_role(host, unit_dir)

    assert done.returncode == 0, done.stdout[-4000:]
    assert systemctl(root, "is-enabled", "voice-old.service") == "disabled"
    assert systemctl(root, "is-enabled", "agentlocator.service") == "enabled"
    assert (unit_dir / "voice-old.service").read_text() == unit_text, "the unit file itself is the user's: kept"
    assert not alive(master) and app_masters(host.app_dir) == []
    assert "a second systemd unit of the app beside agentlocator.service (enabled; two runners, runbook 3.3): " \
           "systemctl --root=%s disable voice-old.service" % root in done.stdout
    again = strays_role(host, unit_dir)
    assert again.returncode == 0 and re.search(r"changed=0\s", again.stdout), again.stdout[-3000:]


def immutable(path, on):
    return subprocess.run(["chattr", "+i" if on else "-i", str(path)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode == 0


@pytest.mark.skipif(not SYSTEMCTL, reason="needs systemctl (used offline, with --root)")
def test_a_unit_that_also_runs_something_else_or_no_systemctl_or_a_refusal_changes_nothing(host):
    root, unit_dir, master = unit_root(host, extra="ExecStartPost=/usr/local/bin/metrics-agent --push\n")

    refused = strays_role(host, unit_dir)
    assert refused.returncode != 0
    assert "voice-old.service (%s), beside agentlocator.service: not disabled: it also runs ExecStartPost=" % (
        unit_dir / "voice-old.service") in refused.stdout
    assert systemctl(root, "is-enabled", "voice-old.service") == "enabled" and alive(master)

    # The unit runs the app alone now; without systemctl nothing can tell or change its state.
    (unit_dir / "voice-old.service").write_text(
        (unit_dir / "voice-old.service").read_text().replace("ExecStartPost=/usr/local/bin/metrics-agent --push\n", ""))
    missing = strays_role(host, unit_dir, strays_systemctl=str(host.tmp / "no-such" / "systemctl"))
    assert missing.returncode != 0 and "not disabled: systemctl is not found" in missing.stdout
    assert "`systemctl disable --now voice-old.service`" in missing.stdout
    assert systemctl(root, "is-enabled", "voice-old.service") == "enabled" and alive(master)

    # systemctl refuses (the wants directory cannot be changed, even by root): one line, nothing stopped.
    wants = unit_dir / "multi-user.target.wants"
    if not immutable(wants, True):
        pytest.skip("chattr +i is not possible on this filesystem")
    try:
        said_no = strays_role(host, unit_dir)
    finally:
        immutable(wants, False)
    assert said_no.returncode != 0, said_no.stdout[-3000:]
    assert "systemctl --root=%s disable voice-old.service refused:" % root in said_no.stdout
    assert "disable voice-old.service yourself" in said_no.stdout
    assert systemctl(root, "is-enabled", "voice-old.service") == "enabled" and alive(master)


@pytest.mark.skipif(not SYSTEMCTL, reason="needs systemctl (used offline, with --root)")
def test_stabilize_in_check_mode_says_it_would_disable_the_second_unit(host, tmp_path):
    root, unit_dir, master = unit_root(host, managed=False)
    out = stabilize(tmp_path, host.vars(doctor_service_manager="systemd", doctor_systemd_unit_dir=str(unit_dir)),
                    ["--check"])
    assert recap(out)["failed"] == 0, out[-3000:]
    actions = stabilize_report(tmp_path)["actions"]
    assert any(a["action"] == "would disable systemd unit" and a["target"].startswith("voice-old.service (")
               for a in actions), actions
    assert systemctl(root, "is-enabled", "voice-old.service") == "enabled" and alive(master)


# --- 3. a cron @reboot loop -------------------------------------------------------------------------------------
def test_a_cron_reboot_loop_is_stopped_and_its_crontab_line_named_not_edited(host, tmp_path):
    command = ("cd %s && while true; do %s -m gunicorn AgentLocator.main:app -b 0.0.0.0:%d --no-control-socket; "
               "sleep 1; done" % (host.app_dir, PYTHON, host.port))
    cron = tmp_path / "cron.d"
    cron.mkdir()
    (cron / "voice").write_text("SHELL=/bin/sh\n@reboot root %s\n" % command)
    (cron / "backup").write_text("*/5 * * * * root /usr/local/bin/backup.sh\n")
    crontabs = tree_digest(cron)
    # As cron runs an @reboot line: `sh -c COMMAND` from the user's home.
    loop = host.spawn(["/bin/sh", "-c", command], tmp_path)
    wait_for(lambda: listening_pid(host.port), 20, "the loop's master")
    loop_master = listening_pid(host.port)
    crontab_vars = host.vars(doctor_service_manager="standalone", doctor_crontabs=[str(cron / "*")])

    out = stabilize(tmp_path, crontab_vars)

    assert recap(out)["failed"] == 0, out[-3000:]
    assert not alive(loop) and not alive(loop_master)
    assert_one_master_stays(host)
    actions = stabilize_report(tmp_path)["actions"]
    assert any(a["target"].startswith("%d " % loop) and "shell loop" in a["reason"] for a in actions), actions
    named = [a for a in actions if a["action"] == "found the crontab line that starts it (not edited)"]
    assert [a["target"] for a in named] == ["%s: @reboot root %s" % (cron / "voice", command)], actions
    assert "remove the line" in named[0]["reason"] and str(loop) in named[0]["reason"]
    assert tree_digest(cron) == crontabs, "stabilize edited a crontab"
    assert_idempotent(stabilize(tmp_path, crontab_vars))
