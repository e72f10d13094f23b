"""The gunicorn_service role's one command template renders the runbook's canonical command
(gunicorn.format_command), and the runner files around it read PORT from the environment."""

import shlex
from pathlib import Path

import jinja2

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn, service_env

TEMPLATES = Path(__file__).resolve().parents[5] / "roles" / "gunicorn_service" / "templates"


def render(name, **values):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["quote"] = lambda s: shlex.quote(str(s))
    base = {
        "ansible_managed": "Ansible managed",
        "gunicorn_service_python": "/srv/app/.venv/bin/python", "gunicorn_service_app": "AgentLocator.main:app",
        "gunicorn_service_chdir": "/srv/app", "gunicorn_service_name": "agentlocator",
        "gunicorn_service_worker_class": "sync", "gunicorn_service_workers": 1,
        "__gunicorn_service_timeout": 60, "__gunicorn_service_keepalive": 30, "__gunicorn_service_log": "-",
        "__gunicorn_service_manager": "standalone", "__gunicorn_service_runner_env": "/srv/svc/runner.env",
        "__gunicorn_service_pidfile": "/srv/svc/gunicorn.pid", "__gunicorn_service_console_log": "/srv/svc/console.log",
        "__gunicorn_service_run_script": "/srv/svc/run.sh", "__gunicorn_service_carried_env": "/srv/svc/carried.env",
        "gunicorn_service_env_file": "/srv/app/.env", "gunicorn_service_environment": {"PORT": "8123"},
        "gunicorn_service_grace": 10,
        "__gunicorn_service_user": "", "__gunicorn_service_group": "", "__gunicorn_service_home": "/",
        "__gunicorn_service_setpriv": "",
    }
    base.update(values)
    return env.get_template(name).render(**base)


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
       "__gunicorn_service_setpriv": "setpriv --reuid=33 --regid=33 --init-groups -- "}


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
    # Anything but a unix socket is the runbook's bind on $PORT.
    assert "-b 0.0.0.0:${PORT} " in render("command.j2", gunicorn_service_bind="10.0.0.1:80")
