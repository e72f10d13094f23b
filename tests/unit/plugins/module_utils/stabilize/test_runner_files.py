"""The runner's files service_apply writes (module_utils/stabilize/runner_files.py): the runbook's canonical command
(gunicorn.format_command), PORT read from the environment, each value quoted the way its reader reads it."""

import shlex

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn, service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import runner_files

BASE = {
    "python": "/srv/app/.venv/bin/python", "app": "AgentLocator.main:app", "chdir": "/srv/app", "name": "agentlocator",
    "worker_class": "sync", "workers": 1, "timeout": 0, "keepalive": 0, "log": "-", "manager": "standalone",
    "runner_env": "/srv/svc/runner.env", "pidfile": "/srv/svc/gunicorn.pid", "console_log": "/srv/svc/console.log",
    "run_script": "/srv/svc/run.sh", "carried_env": "/srv/svc/carried.env", "env_file": "/srv/app/.env",
    "environment": {"PORT": "8123"}, "grace": 10, "user": "", "group": "", "home": "/", "run_as": {},
    "carried_env_files": [],
}
RENDER = {"command.j2": lambda spec: runner_files.command(spec) + "\n", "run.sh.j2": runner_files.start_script,
          "program.conf.j2": runner_files.program, "gunicorn.service.j2": runner_files.unit,
          "runner.env.j2": runner_files.runner_env}
# What the role's templates were given, by the names of the spec.
NAMES = {"gunicorn_service_python": "python", "gunicorn_service_worker_class": "worker_class",
         "__gunicorn_service_timeout": "timeout", "__gunicorn_service_keepalive": "keepalive",
         "__gunicorn_service_log": "log", "__gunicorn_service_manager": "manager",
         "__gunicorn_service_run_script": "run_script", "gunicorn_service_environment": "environment",
         "gunicorn_service_chdir": "chdir", "__gunicorn_service_user": "user", "__gunicorn_service_group": "group",
         "__gunicorn_service_home": "home", "gunicorn_service_config": "config", "gunicorn_service_bind": "bind"}


def render(name, **values):
    spec = dict(BASE)
    for key, value in values.items():
        if key == "gunicorn_service_carried":
            spec["carried_env_files"] = value.get("env_files", [])
        else:
            spec[NAMES.get(key, key)] = value
    return RENDER[name](spec)


def test_command_is_the_runbooks_canonical_command():
    for worker_class, timeout, keepalive in (("sync", 60, 30), ("eventlet", 120, 75)):
        text = render("command.j2", gunicorn_service_worker_class=worker_class, __gunicorn_service_timeout=timeout,
                      __gunicorn_service_keepalive=keepalive).strip()
        assert text == gunicorn.format_command("/srv/app/.venv/bin/python", "AgentLocator.main:app", "${PORT}",
                                               worker_class, 1, timeout, keepalive)
        settings = gunicorn.parse_cmdline(shlex.split(text.replace("${PORT}", "8123")))
        assert settings["worker_class"] == worker_class and settings["bind"] == ["0.0.0.0:8123"]
        assert settings["capture_output"] and settings["loglevel"] == "debug"


def test_command_quotes_paths_and_writes_the_log_file():
    text = render("command.j2", gunicorn_service_python="/srv/my app/python",
                  __gunicorn_service_log="/var/log/app/gunicorn.log").strip()
    argv = shlex.split(text.replace("${PORT}", "8000"))
    assert argv[0] == "/srv/my app/python"
    assert argv[argv.index("--error-logfile") + 1] == "/var/log/app/gunicorn.log"


def test_standalone_script_daemonizes_and_reads_port_at_start():
    text = render("run.sh.j2")
    assert text.startswith("#!/bin/sh\n")
    # runner.env (PORT, EVENTLET_*), what the earlier runner gave the app, then the service's env file, which wins.
    sourced = [l for l in text.splitlines() if ". /srv/" in l]
    assert sourced == [". /srv/svc/runner.env", "[ ! -r /srv/svc/carried.env ] || . /srv/svc/carried.env",
                       "[ ! -r /srv/app/.env ] || . /srv/app/.env"]
    last = text.strip().splitlines()[-1]
    assert last.startswith("exec /srv/app/.venv/bin/python -m gunicorn AgentLocator.main:app -k sync")
    assert "-b 0.0.0.0:${PORT}" in last and "8123" not in last
    assert "--daemon --pid /srv/svc/gunicorn.pid" in last


def test_supervisord_program_carries_the_environment():
    text = render("program.conf.j2", __gunicorn_service_manager="supervisord",
                  gunicorn_service_environment={"PORT": "8123", "EVENTLET_HUB": "selects"})
    assert "[program:agentlocator]\n" in text
    assert 'environment=EVENTLET_HUB="selects",PORT="8123"\n' in text
    assert "command=/srv/svc/run.sh\n" in text
    script = render("run.sh.j2", __gunicorn_service_manager="supervisord")
    assert "--daemon" not in script and "runner.env" not in script


def test_systemd_unit_takes_port_from_the_environment():
    text = render("gunicorn.service.j2", __gunicorn_service_manager="systemd",
                  gunicorn_service_carried={"env_files": ["/etc/default/agentlocator"]})
    assert 'Environment="PORT=8123"\n' in text
    # What the old unit set, then its env files (which overrode its Environment=), then the runner's PORT (over an
    # old file's PORT), and the service's env file last, so it wins.
    files = [l for l in text.splitlines() if l.startswith("EnvironmentFile=")]
    assert files == ["EnvironmentFile=-/srv/svc/carried.env", "EnvironmentFile=-/etc/default/agentlocator",
                     "EnvironmentFile=-/srv/svc/runner.env", "EnvironmentFile=-/srv/app/.env"]
    exec_start = [l for l in text.splitlines() if l.startswith("ExecStart=")]
    assert exec_start == ["ExecStart=" + render("command.j2").strip()]
    assert "\nRestart=on-failure\n" in text


# --- the user the service runs as ------------------------------------------------------------------------------
WWW = {"__gunicorn_service_user": "www-data", "__gunicorn_service_group": "www-data", "__gunicorn_service_home": "/var/www",
       "run_as": {"user": "www-data", "uid": 33, "gid": 33}}


def test_each_runner_runs_the_service_as_its_user():
    unit = render("gunicorn.service.j2", __gunicorn_service_manager="systemd", gunicorn_service_carried={}, **WWW)
    assert "\n[Service]\nType=simple\nUser=www-data\nGroup=www-data\nWorkingDirectory=/srv/app\n" in unit
    program = render("program.conf.j2", __gunicorn_service_manager="supervisord", **WWW)
    assert "\ndirectory=/srv/app\nuser=www-data\n" in program
    script = render("run.sh.j2", **WWW)
    last = script.strip().splitlines()[-1]
    assert last.startswith("exec setpriv --reuid=33 --regid=33 --init-groups -- /srv/app/.venv/bin/python -m gunicorn ")
    # Its HOME and names, as systemd's User= gives them; the env files read after may still set their own.
    lines = script.splitlines()
    assert lines.index("export HOME USER LOGNAME") < lines.index("set -a")
    assert "HOME=/var/www USER=www-data LOGNAME=www-data" in lines


def test_a_root_service_gets_no_user_directive():
    unit = render("gunicorn.service.j2", __gunicorn_service_manager="systemd", gunicorn_service_carried={})
    program = render("program.conf.j2", __gunicorn_service_manager="supervisord")
    script = render("run.sh.j2")
    assert "User=" not in unit and "Group=" not in unit and "user=" not in program
    assert "setpriv" not in script and "HOME=" not in script


# --- quoting, each runner its own way ----------------------------------------------------------------------------
ODD = {"gunicorn_service_chdir": "/srv/50%d $HOME", "gunicorn_service_python": "/srv/py %n/$x/python",
       "__gunicorn_service_log": '/var/log/a "b" \\c/%i $y.log',
       "gunicorn_service_environment": {"PORT": "8123", "GREETING": '50% of $HOME "hi" \\ x'}}


def test_systemd_unit_escapes_specifiers_variables_and_quotes():
    unit = render("gunicorn.service.j2", __gunicorn_service_manager="systemd", gunicorn_service_carried={}, **ODD)
    assert "\nWorkingDirectory=/srv/50%%d $HOME\n" in unit
    assert '\nEnvironment="GREETING=50%% of $HOME \\"hi\\" \\\\ x"\n' in unit
    exec_start = [l for l in unit.splitlines() if l.startswith("ExecStart=")][0]
    # The executable: % doubled, $ as is (systemd expands no variable there); an argument: $$ too.
    assert exec_start.startswith('ExecStart="/srv/py %%n/$x/python" -m gunicorn AgentLocator.main:app ')
    assert exec_start.endswith(' --error-logfile "/var/log/a \\"b\\" \\\\c/%%i $$y.log"')
    assert "-b 0.0.0.0:${PORT}" in exec_start  # the one variable systemd is to expand


def test_supervisord_program_and_start_script_quote_their_own_way():
    program = render("program.conf.j2", __gunicorn_service_manager="supervisord",
                     __gunicorn_service_run_script="/srv/my svc/run.sh", **ODD)
    assert "\ncommand='/srv/my svc/run.sh'\n" in program
    assert "\ndirectory=/srv/50%%d $HOME\n" in program
    assert 'GREETING="50%% of $HOME \\"hi\\" \\\\ x"' in program
    script = render("run.sh.j2", **ODD)
    argv = shlex.split(script.strip().splitlines()[-1].split(" >>")[0])
    assert argv[1] == "/srv/py %n/$x/python" and argv[argv.index("--error-logfile") + 1] == ODD["__gunicorn_service_log"]
    assert "cd '/srv/50%d $HOME'\n" in script


def test_runner_env_quotes_like_the_env_file_module():
    values = {"PORT": "8123", "EVENTLET_HUB": "selects", "GREETING": '50% of $HOME "hi" `x` \\ y', "EMPTY": ""}
    text = render("runner.env.j2", gunicorn_service_environment=values)
    lines = [l for l in text.splitlines() if not l.startswith("#")]
    assert lines == [service_env.env_line(name, values[name]) for name in sorted(values)]
    assert service_env.parse_dotenv(text) == values


def test_command_keeps_the_config_file_and_the_socket_bind_of_the_plan():
    """plan.runner_shape's config and bind (issue 13 point 7): -c FILE kept, -b unix:PATH behind the proxy."""
    text = render("command.j2", gunicorn_service_config="/srv/app/gunicorn.conf.py",
                  gunicorn_service_bind="unix:/run/app/app.sock").strip()
    assert text == gunicorn.format_command("/srv/app/.venv/bin/python", "AgentLocator.main:app", "${PORT}",
                                           config="/srv/app/gunicorn.conf.py", bind="unix:/run/app/app.sock")
    settings = gunicorn.parse_cmdline(shlex.split(text))
    assert settings["config"] == "/srv/app/gunicorn.conf.py" and settings["bind"] == ["unix:/run/app/app.sock"]
    # A loopback port behind the proxy is kept too; anything else is the runbook's bind on $PORT.
    assert "-b 127.0.0.1:8000 " in render("command.j2", gunicorn_service_bind="127.0.0.1:8000")
    assert "-b '[::1]:8000' " in render("command.j2", gunicorn_service_bind="[::1]:8000")
    assert "-b 0.0.0.0:${PORT} " in render("command.j2", gunicorn_service_bind="10.0.0.1:80")
    assert "-b 0.0.0.0:${PORT} " in render("command.j2", gunicorn_service_bind="0.0.0.0:8000")


def test_settings_the_service_sets_itself_are_left_off_the_command_line():
    """plan.runner_shape's kept settings: the command line would win over the config file and GUNICORN_CMD_ARGS."""
    text = render("command.j2", keep=["workers", "timeout"], gunicorn_service_config="/srv/app/gunicorn.conf.py")
    argv = shlex.split(text.replace("${PORT}", "8123"))
    assert "-w" not in argv and "--timeout" not in argv and argv[argv.index("--keep-alive") + 1] == "30"
    settings = gunicorn.parse_cmdline(argv)
    assert settings["bind"] == ["0.0.0.0:8123"] and settings["config"] == "/srv/app/gunicorn.conf.py"
    assert "--keep-alive" not in render("command.j2", keep=["keepalive"]) and " -w 1 " in render("command.j2")


def test_a_numeric_user_gets_no_supplementary_groups_of_a_name():
    script = render("run.sh.j2", __gunicorn_service_user="1234", __gunicorn_service_group="1234",
                    run_as={"user": "1234", "uid": 1234, "gid": 1234})
    assert "exec setpriv --reuid=1234 --regid=1234 --clear-groups -- " in script


def test_a_name_or_value_that_would_inject_is_named_before_anything_is_rendered():
    assert runner_files.problems(dict(BASE, service_dir="/srv/svc")) == []
    for name in ("agentlocator\ntouch PWNED", "../x", "my app", ".hidden", ""):
        found = runner_files.problems(dict(BASE, name=name, service_dir="/srv/svc"))
        assert len(found) == 1 and found[0].startswith("service name ") and "set doctor_service_name" in found[0]
    found = runner_files.problems(dict(BASE, service_dir="/srv/svc", chdir="/srv/app\nExecStartPre=/bin/sh",
                                       environment={"PORT": "8123", "X\nY": "1", "GREETING": "a\x7fb"}))
    assert found == ["chdir, environment GREETING, environment name X\nY: a line break or another control character "
                     "cannot go into a unit, a program or a start script - fix the value"]
    # The stabilize role asks before anything is read (stabilize_plan step=check), with its archive directory too.
    assert runner_files.problems(dict(BASE, service_dir="/srv/svc", archive_dir="/srv/a\rb")) == [
        "archive_dir: a line break or another control character cannot go into a unit, a program or a start script "
        "- fix the value"]
