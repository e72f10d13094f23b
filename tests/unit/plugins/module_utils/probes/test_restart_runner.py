"""restart_runner: who restarts the app's masters, with real processes (bash loops, curl) and real unit, program and
crontab files. The runners found through a real master's parent chain (a bash loop, supervisord, a rendered systemd
unit) are in tests/integration/test_diagnose_runners_and_restarts.py."""

import subprocess
import time

import psutil
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import restart_runner

APP = "AgentLocator.main:app"


@pytest.fixture
def started():
    procs = []

    def start(script, cwd=None):
        proc = subprocess.Popen(["bash", "-c", script], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.time() + 10
        while "while" not in " ".join(psutil.Process(proc.pid).cmdline()):
            assert time.time() < deadline, "bash never showed its command line"
            time.sleep(0.02)
        return proc
    yield start
    for proc in procs:
        proc.kill()   # our own child, by its PID
        proc.wait()


def test_a_shell_loop_that_runs_the_app_is_found_without_a_master(started, tmp_path):
    app_dir, checkout = tmp_path / "app", tmp_path / "other-checkout"
    app_dir.mkdir()
    checkout.mkdir()
    script = 'while true; do python3 -c "print(1)" %s >/dev/null; sleep 0.2; done' % APP
    loop = started(script, cwd=app_dir)
    named = started('cd %s; %s' % (app_dir, script))              # names the directory, runs elsewhere
    elsewhere = started(script, cwd=checkout)                     # the same app spec in another checkout
    other = started("while true; do sleep 0.2; done", cwd=app_dir)   # a loop that runs something else
    found = restart_runner.shell_loops(psutil, APP, str(app_dir))
    pids = [r["pid"] for r in found]
    assert loop.pid in pids and named.pid in pids
    assert elsewhere.pid not in pids and other.pid not in pids
    runner = found[pids.index(loop.pid)]
    assert runner["kind"] == "shell_loop" and runner["name"] == "bash" and APP in runner["command"]


def test_a_health_check_on_another_port_is_named_and_one_on_the_apps_port_is_not(started):
    wrong = started("while true; do curl -s -m 1 http://127.0.0.1:9/healthz >/dev/null; sleep 0.2; done")
    right = started("while true; do curl -s -m 1 http://localhost:8123/healthz >/dev/null; sleep 0.2; done")
    elsewhere = started("while true; do curl -s -m 1 http://127.0.0.1:9/metrics >/dev/null; sleep 0.2; done")
    found = restart_runner.health_checkers(psutil, 8123, "/healthz")
    assert [c["pid"] for c in found if c["pid"] in (wrong.pid, right.pid, elsewhere.pid)] == [wrong.pid]
    assert next(c for c in found if c["pid"] == wrong.pid)["ports"] == [9]


def write_unit(tmp_path, chdir, lines):
    units = tmp_path / "units"
    units.mkdir(exist_ok=True)
    (units / "voice.service").write_text("[Service]\nWorkingDirectory=%s\nExecStart=/srv/venv/bin/gunicorn %s\n%s"
                                         % (chdir, APP, lines))
    return units


def test_a_unit_with_restart_and_watchdog_is_a_restarter_with_its_settings(tmp_path):
    units = write_unit(tmp_path, tmp_path, "Restart=always\nRestartSec=1\nWatchdogSec=5\nUser=www-data\n")
    dropin = units / "voice.service.d"
    dropin.mkdir()
    (dropin / "restart.conf").write_text("[Service]\nRestartSec=2\n")
    found = restart_runner.configured_runners(APP, str(tmp_path), [str(units)], conf_globs=[str(tmp_path / "none")])
    assert found == [{"kind": "systemd", "pid": None, "name": "voice.service", "command": None,
                      "source": str(units / "voice.service"), "found": "its ExecStart runs %s" % APP,
                      "settings": {"Restart": "always", "RestartSec": "2", "WatchdogSec": "5"}}]


def test_a_unit_that_does_not_restart_or_runs_another_checkout_is_not(tmp_path):
    chdir = tmp_path / "app"
    units = write_unit(tmp_path, chdir, "Restart=no\n")
    assert restart_runner.configured_runners(APP, str(chdir), [str(units)], [str(tmp_path / "none")]) == []
    other = tmp_path / "other"
    other.mkdir()
    units = write_unit(other, tmp_path / "elsewhere", "Restart=always\n")
    assert restart_runner.configured_runners(APP, str(chdir), [str(units)], [str(tmp_path / "none")]) == []
    assert restart_runner.configured_runners(APP, str(tmp_path / "elsewhere"), [str(units)], [str(tmp_path / "none")])


def test_a_supervisord_program_with_its_restart_settings_and_the_defaults(tmp_path):
    conf = tmp_path / "voice.conf"
    conf.write_text("[program:voice]\ncommand=gunicorn %s -b 0.0.0.0:8123\ndirectory=%s\nautorestart=true\n"
                    "startsecs=1\n" % (APP, tmp_path))
    found = restart_runner.configured_runners(APP, str(tmp_path), [str(tmp_path / "no-units")], [str(conf)])
    assert len(found) == 1
    assert found[0]["kind"] == "supervisord" and found[0]["name"] == "voice" and found[0]["source"] == str(conf)
    assert found[0]["settings"] == {"autorestart": "true", "startsecs": "1", "startretries": "3 (default)"}


def test_supervisords_config_and_its_includes(tmp_path):
    conf = tmp_path / "supervisord.conf"
    conf.write_text("[supervisord]\nnodaemon=true\n[include]\nfiles = conf.d/*.conf /etc/extra/*.ini\n")
    assert restart_runner.supervisord_conf_path(["supervisord", "-c", "supervisord.conf"], str(tmp_path)) == str(conf)
    assert restart_runner.supervisord_conf_path(["/usr/bin/python3", "/usr/bin/supervisord",
                                                 "--configuration=%s" % conf], "/") == str(conf)
    assert restart_runner.supervisord_include_globs(str(conf)) == [str(tmp_path / "conf.d" / "*.conf"),
                                                                   "/etc/extra/*.ini"]
    assert restart_runner.supervisord_include_globs(str(tmp_path / "missing.conf")) == []


def test_a_crontab_line_that_names_the_app(tmp_path):
    crontab = tmp_path / "voice"
    crontab.write_text("# m h dom mon dow user command\n# */1 * * * * root %s\n"
                       "* * * * * root cd /srv/app && pgrep -f %s || /srv/venv/bin/gunicorn %s &\n"
                       "0 3 * * * root /usr/sbin/logrotate /etc/logrotate.conf\n" % (APP, APP, APP))
    found = restart_runner.cron_lines(APP, "/srv/app", [str(tmp_path / "*")])
    assert [r["command"] for r in found] == [
        "* * * * * root cd /srv/app && pgrep -f %s || /srv/venv/bin/gunicorn %s &" % (APP, APP)]
    assert found[0]["kind"] == "cron" and found[0]["source"] == str(crontab)


def test_a_plain_shell_that_started_the_master_once_restarts_nothing(tmp_path):
    master = {"pid": 999999, "age": 3.0, "runner": {"kind": "shell", "pid": 4000, "detail": "bash /dev/fd/3"}}
    assert restart_runner.runner_of_master(psutil, master, [str(tmp_path)]) is None


def test_the_first_runner_is_the_masters_own_and_the_files_follow(tmp_path, started):
    loop = started("while true; do sleep 0.2; done")
    units = write_unit(tmp_path, tmp_path, "Restart=on-failure\n")
    runner = {"kind": "shell_loop", "pid": loop.pid, "detail": "bash -c while true; do sleep 0.2; done"}
    master = {"pid": 999999, "age": 3.0, "runner": runner}
    found = restart_runner.collect(psutil, APP, str(tmp_path), [master], 8123, "/healthz", unit_dir=str(units),
                                   conf_globs=[str(tmp_path / "none")], crontabs=[str(tmp_path / "none")])
    assert [(r["kind"], r["pid"]) for r in found["runners"]] == [("shell_loop", loop.pid), ("systemd", None)]
    assert found["runners"][0]["found"] == "the parent chain of master 999999"
    assert found["runners"][1]["settings"] == {"Restart": "on-failure"}
