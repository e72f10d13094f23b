"""plugins/module_utils/domain/service_env.py (env files, /proc environ, systemd, supervisord, limits) and
probes/port.py valid_port."""

import resource
import subprocess
import textwrap

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import files
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.port import valid_port


# --- parse_dotenv -------------------------------------------------------------------------------------
def test_parse_dotenv_service_env_file():
    text = textwrap.dedent("""\
        # AgentLocator service environment
        PORT=8123
        export EVENTLET_HUB=selects
        EVENTLET_NO_GREENDNS="yes"
        PUBLIC_BASE_URL='https://voice.example.com/'

        GOOGLE_APPLICATION_CREDENTIALS=/etc/agentlocator/gcp.json  # service account
        GREETING="Hello # not a comment"
        DATABASE_URL=postgres://app:pw@db/app?sslmode=require
        EMPTY=
          INDENTED = 1
        not a variable line
        """)
    assert service_env.parse_dotenv(text) == {
        "PORT": "8123",
        "EVENTLET_HUB": "selects",
        "EVENTLET_NO_GREENDNS": "yes",
        "PUBLIC_BASE_URL": "https://voice.example.com/",
        "GOOGLE_APPLICATION_CREDENTIALS": "/etc/agentlocator/gcp.json",
        "GREETING": "Hello # not a comment",
        "DATABASE_URL": "postgres://app:pw@db/app?sslmode=require",
        "EMPTY": "",
        "INDENTED": "1",
    }


def test_parse_dotenv_last_assignment_wins():
    assert service_env.parse_dotenv("PORT=8000\nPORT=8123\n") == {"PORT": "8123"}


def test_parse_dotenv_quoted_value_with_trailing_comment():
    assert service_env.parse_dotenv('PORT="8123"  # the platform port\n') == {"PORT": "8123"}


# --- parse_environ -------------------------------------------------------------------------------------
def test_parse_environ_proc_bytes():
    raw = b"PATH=/srv/app/.venv/bin:/usr/bin\0PORT=8123\0EVENTLET_HUB=selects\0DSN=a=b\0LANG=C.UTF-8\0"
    assert service_env.parse_environ(raw) == {
        "PATH": "/srv/app/.venv/bin:/usr/bin", "PORT": "8123", "EVENTLET_HUB": "selects", "DSN": "a=b",
        "LANG": "C.UTF-8"}


def test_parse_environ_empty_value_and_bad_bytes():
    env = service_env.parse_environ(b"PORT=\0NAME=caf\xe9\0junk-without-equals\0")
    assert env == {"PORT": "", "NAME": "caf\ufffd"}


def test_parse_environ_empty():
    assert service_env.parse_environ(b"") == {}


# --- parse_systemd_environment ---------------------------------------------------------------------------
UNIT = textwrap.dedent("""\
    [Unit]
    Description=AgentLocator voice app (gunicorn)
    After=network.target

    [Service]
    User=app
    WorkingDirectory=/srv/app
    Environment="PORT=8123" "A=b c"
    Environment=EVENTLET_NO_GREENDNS=yes EVENTLET_HUB=selects
    EnvironmentFile=-/etc/x
    EnvironmentFile=/etc/agentlocator/agentlocator.env
    # Environment=PORT=9999
    ExecStart=/srv/app/.venv/bin/python -m gunicorn AgentLocator.main:app -k eventlet -w 1 -b 0.0.0.0:${PORT}
    Restart=always

    [Install]
    WantedBy=multi-user.target
    """)


def test_parse_systemd_environment():
    env, files = service_env.parse_systemd_environment(UNIT)
    assert env == {"PORT": "8123", "A": "b c", "EVENTLET_NO_GREENDNS": "yes", "EVENTLET_HUB": "selects"}
    assert files == ["/etc/x", "/etc/agentlocator/agentlocator.env"]


def test_parse_systemd_environment_later_line_overrides():
    env, files = service_env.parse_systemd_environment("[Service]\nEnvironment=PORT=8000\nEnvironment=PORT=8123\n")
    assert (env, files) == ({"PORT": "8123"}, [])


# --- parse_supervisord_programs ---------------------------------------------------------------------------
SUPERVISORD = textwrap.dedent("""\
    [supervisord]
    nodaemon=true
    logfile=/var/log/supervisor/supervisord.log

    ; the voice app
    [program:agentlocator]
    command=/srv/app/.venv/bin/python -m gunicorn AgentLocator.main:app -k eventlet -w 1 -b 0.0.0.0:8123
    directory=/srv/app
    user=www-data
    environment=PORT="8123",EVENTLET_HUB="selects"
    autorestart=true
    stdout_logfile=/var/log/agentlocator/gunicorn.log

    [program:agentlocator-jobs]
    command = /srv/app/.venv/bin/python jobs.py
    environment = GREETING="a, b",MODE=batch,EMPTY=""

    [group:voice]
    programs=agentlocator,agentlocator-jobs
    environment=IGNORED=1
    """)


def test_systemd_settings_last_assignment_wins_and_an_empty_one_resets():
    unit = "[Service]\nRestart=always\nWatchdogSec=5\nRestartSec=1\n"
    dropin = "[Service]\nRestartSec=\nWatchdogSec=\\\n  10\n"
    assert service_env.systemd_settings(unit, ("Restart", "WatchdogSec", "RestartSec")) == \
        {"Restart": "always", "WatchdogSec": "5", "RestartSec": "1"}
    assert service_env.systemd_settings(unit + dropin, ("Restart", "WatchdogSec", "RestartSec")) == \
        {"Restart": "always", "WatchdogSec": "10"}


def test_parse_supervisord_programs():
    programs = service_env.parse_supervisord_programs(SUPERVISORD)
    assert programs == {
        "agentlocator": {
            "command": "/srv/app/.venv/bin/python -m gunicorn AgentLocator.main:app -k eventlet -w 1 -b 0.0.0.0:8123",
            "directory": "/srv/app",
            "environment": {"PORT": "8123", "EVENTLET_HUB": "selects"},
            "user": "www-data",
            "autorestart": "true",
        },
        "agentlocator-jobs": {
            "command": "/srv/app/.venv/bin/python jobs.py",
            "directory": "",
            "environment": {"GREETING": "a, b", "MODE": "batch", "EMPTY": ""},
            "user": "",
        },
    }


def test_parse_supervisord_multiline_environment():
    conf = ('[program:agentlocator]\ncommand=/srv/app/.venv/bin/gunicorn AgentLocator.main:app\n'
            'environment=\n    PORT="8123",\n    EVENTLET_HUB="selects"\n')
    env = service_env.parse_supervisord_programs(conf)["agentlocator"]["environment"]
    assert env == {"PORT": "8123", "EVENTLET_HUB": "selects"}


# --- parse_limits ---------------------------------------------------------------------------------------
# /proc/<pid>/limits of a master started under `prlimit --nofile=256:256` (format copied from this machine).
PROC_LIMITS = (
    "Limit                     Soft Limit           Hard Limit           Units     \n"
    "Max cpu time              unlimited            unlimited            seconds   \n"
    "Max file size             unlimited            unlimited            bytes     \n"
    "Max data size             unlimited            unlimited            bytes     \n"
    "Max stack size            8388608              unlimited            bytes     \n"
    "Max core file size        0                    unlimited            bytes     \n"
    "Max resident set          unlimited            unlimited            bytes     \n"
    "Max processes             96365                96365                processes \n"
    "Max open files            256                  256                  files     \n"
    "Max locked memory         8388608              8388608              bytes     \n"
    "Max address space         unlimited            unlimited            bytes     \n"
    "Max file locks            unlimited            unlimited            locks     \n"
    "Max pending signals       96365                96365                signals   \n"
    "Max msgqueue size         819200               819200               bytes     \n"
    "Max nice priority         0                    0                    \n"
    "Max realtime priority     0                    0                    \n"
    "Max realtime timeout      unlimited            unlimited            us        \n"
)


def test_parse_limits_proc_text():
    limits = service_env.parse_limits(PROC_LIMITS)
    assert len(limits) == 16
    assert limits["Max open files"] == (256, 256)
    assert limits["Max stack size"] == (8388608, None)
    assert limits["Max cpu time"] == (None, None)
    assert limits["Max core file size"] == (0, None)
    assert limits["Max nice priority"] == (0, 0)
    assert limits["Max realtime timeout"] == (None, None)


def test_parse_limits_of_this_process_matches_getrlimit():
    with open("/proc/self/limits") as f:
        soft, hard = service_env.parse_limits(f.read())["Max open files"]
    want = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert (soft, hard) == tuple(None if v == resource.RLIM_INFINITY else v for v in want)


def test_parse_limits_empty():
    assert service_env.parse_limits("") == {}


# --- redact_env -----------------------------------------------------------------------------------------
def test_redact_env_hides_secret_names_only():
    env = {
        "PORT": "8123",
        "PUBLIC_BASE_URL": "https://voice.example.com",
        "EVENTLET_HUB": "selects",
        "TWILIO_AUTH_TOKEN": "0123456789abcdef",
        "OPENAI_API_KEY": "sk-live-abc",
        "STRIPE_APIKEY": "rk_live_x",
        "DB_PASSWORD": "hunter2",
        "SESSION_SECRET": "s3",
        "GOOGLE_APPLICATION_CREDENTIALS": "/etc/agentlocator/gcp.json",
        "twilio_auth_token": "lower-case-too",
    }
    redacted = service_env.redact_env(env)
    assert redacted == {
        "PORT": "8123",
        "PUBLIC_BASE_URL": "https://voice.example.com",
        "EVENTLET_HUB": "selects",
        "TWILIO_AUTH_TOKEN": "<redacted>",
        "OPENAI_API_KEY": "<redacted>",
        "STRIPE_APIKEY": "<redacted>",
        "DB_PASSWORD": "<redacted>",
        "SESSION_SECRET": "<redacted>",
        "GOOGLE_APPLICATION_CREDENTIALS": "<redacted>",
        "twilio_auth_token": "<redacted>",
    }
    assert env["TWILIO_AUTH_TOKEN"] == "0123456789abcdef"  # a copy: the input is untouched


# --- probes/port.valid_port -------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    ("8123", 8123), (8123, 8123), (" 8123\n", 8123), ("1", 1), ("65535", 65535),
    ("", None), (None, None), ("0", None), ("65536", None), ("-1", None), ("8O80", None), ("80.0", None),
    ("${PORT}", None), ("$PORT", None), ("0x1f90", None),
])
def test_valid_port(value, expected):
    assert valid_port(value) == expected


# --- the carried env file (carry_env) -----------------------------------------------------------------------
def test_runner_file_environment_of_each_manager():
    program = "[program:app]\ncommand=/srv/run.sh\nenvironment=PORT=\"8123\",RATE=\"5%%\",TOKEN=\"t0k\"\n[program:other]\nenvironment=X=1\n"
    assert service_env.runner_file_environment("supervisord", program, "app") == (
        {"PORT": "8123", "RATE": "5%", "TOKEN": "t0k"}, [], [])
    unit = "[Service]\nEnvironment=\"A=1\" B=2\nEnvironment = C=3 \\\n  D=4%%\nEnvironmentFile=-/etc/default/app\n"
    assert service_env.runner_file_environment("systemd", unit, "app") == (
        {"A": "1", "B": "2", "C": "3", "D": "4%"}, ["/etc/default/app"], [])
    assert service_env.runner_file_environment("standalone", "PORT=1\nX='y z'\n", "app") == ({"PORT": "1", "X": "y z"}, [], [])
    assert service_env.runner_file_environment("supervisord", None, "app") == ({}, [], [])


def test_runner_file_environment_names_what_only_the_manager_can_expand():
    def env_and_problems(manager, text):
        env, files, problems = service_env.runner_file_environment(manager, text, "app")
        assert files == []
        return env, problems
    env, problems = env_and_problems("supervisord", "[program:app]\nenvironment=PATH=\"/v/bin:%(ENV_PATH)s\",A=\"1\"\n")
    assert env == {"A": "1"} and problems == ["PATH uses supervisord's %(...)s expansion, which only the service manager can expand"]
    env, problems = env_and_problems("systemd", "[Service]\nEnvironment=HOME_DIR=%h B=\"open\n")
    assert env == {} and len(problems) == 1 and "cannot read" in problems[0]
    env, problems = env_and_problems("systemd", "[Service]\nEnvironment=HOME_DIR=%h\n")
    assert env == {} and problems == ["HOME_DIR uses a systemd specifier, which only the service manager can expand"]


def test_format_env_file_reads_back_the_same_in_sh_and_parse_dotenv(tmp_path):
    env = {"SPEECH": "en-US", "KEY": 'a "quoted" $HOME `x` \\ it\'s = value', "EMPTY": "", "EQ": "a=b=c"}
    path = tmp_path / "carried.env"
    path.write_text(service_env.format_env_file(env))
    assert service_env.parse_dotenv(path.read_text()) == env
    # sh reads it as systemd's EnvironmentFile= does: double quotes, the four shell escapes, nothing expanded
    out = subprocess.run(["sh", "-c", 'set -a; . "$1"; set +a; env -0', "sh", str(path)], stdout=subprocess.PIPE,
                         check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    seen = service_env.parse_environ(out)
    assert {k: seen[k] for k in env} == env


def test_format_env_file_refuses_what_it_cannot_carry_and_names_the_variable():
    for value in ("two\nlines", "form\x0cfeed", "line\u2028sep"):
        with pytest.raises(ValueError, match="NOTE holds a line break"):
            service_env.format_env_file({"NOTE": value})
    with pytest.raises(ValueError, match="not a valid"):
        service_env.format_env_file({"BAD-NAME": "x"})


# --- editing an env file by name (the env_file module) ---------------------------------------------------
def test_set_env_values_changes_only_the_named_variables_and_keeps_every_other_line():
    text = "# service env\nPORT=5000\nexport TOKEN='t0k' # kept\n\nPORT=5001\nDATABASE_URL=postgresql://u:pw@db/x"
    new, changes = service_env.set_env_values(text, {"PORT": "8123"})
    assert new == "# service env\nPORT=8123\nexport TOKEN='t0k' # kept\n\nPORT=8123\nDATABASE_URL=postgresql://u:pw@db/x"
    assert changes == {"PORT": "changed"}
    # A value it already has changes nothing; a missing variable is appended, quoted so sh and systemd agree.
    assert service_env.set_env_values(new, {"PORT": "8123"}) == (new, {})
    added, changes = service_env.set_env_values("A=1", {"GREETING": 'hi "you" $HOME'})
    assert added == 'A=1\nGREETING="hi \\"you\\" \\$HOME"\n' and changes == {"GREETING": "added"}
    assert service_env.parse_dotenv(added)["GREETING"] == 'hi "you" $HOME'


def test_set_env_values_only_if_value_replaces_just_that_value_and_never_appends():
    text = "export EVENTLET_HUB='select'\nEVENTLET_HUB=poll\n"
    new, changes = service_env.set_env_values(text, {"EVENTLET_HUB": "selects"}, {"EVENTLET_HUB": "select"})
    assert new == "export EVENTLET_HUB=selects\nEVENTLET_HUB=poll\n" and changes == {"EVENTLET_HUB": "changed"}
    assert service_env.set_env_values("A=1\n", {"EVENTLET_HUB": "selects"}, {"EVENTLET_HUB": "select"}) == ("A=1\n", {})


def test_set_env_values_refuses_a_line_break():
    with pytest.raises(ValueError, match="PORT holds a line break"):
        service_env.set_env_values("PORT=1\n", {"PORT": "8000\nEXTRA=injected"})


def test_write_atomically_gives_the_mode_and_replaces_a_symlink_never_its_target(tmp_path):
    target = tmp_path / "target"
    target.write_text("root's\n")
    link = tmp_path / "service.env"
    link.symlink_to(target)
    files.write_atomically(str(link), "PORT=1\n", 0o640)
    assert target.read_text() == "root's\n"
    assert not link.is_symlink() and link.read_text() == "PORT=1\n" and link.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["service.env", "target"]  # no temporary file left


# --- the user a runner file names --------------------------------------------------------------------------
def test_runner_file_user_of_each_manager():
    unit = "[Service]\nUser=root\nUser=www-data\nGroup=adm\nExecStart=/bin/true\n"
    assert service_env.runner_file_user("systemd", unit, "agentlocator") == ("www-data", "adm")
    assert service_env.runner_file_user("systemd", unit + "User=\n", "agentlocator") == (None, "adm")  # reset
    assert service_env.runner_file_user("systemd", "[Service]\nDynamicUser=yes\n", "x") == ("dynamic", None)
    program = "[program:other]\nuser=nobody\n[program:agentlocator]\ncommand=/srv/run.sh\nuser = www-data\n"
    assert service_env.runner_file_user("supervisord", program, "agentlocator") == ("www-data", None)
    assert service_env.runner_file_user("supervisord", program, "missing") == (None, None)
    script = "cd /srv/app\nexec setpriv --reuid=33 --regid=33 --init-groups -- /srv/venv/bin/python -m gunicorn x:app\n"
    assert service_env.runner_file_user("standalone", script, "agentlocator") == ("33", "33")
    assert service_env.runner_file_user("standalone", "exec python -m gunicorn x:app\n", "x") == (None, None)
    assert service_env.runner_file_user("systemd", None, "x") == (None, None)


def test_runner_file_command_of_a_unit_and_a_program():
    unit = ('[Service]\nWorkingDirectory=/srv/app\nEnvironment=PORT=8123\n'
            'ExecStart=-/srv/app/.venv/bin/gunicorn -c /srv/app/gunicorn.conf.py \\\n  -b 0.0.0.0:${PORT} app:app\n')
    assert service_env.runner_file_command('systemd', unit, None, {'PORT': '8123'}) == {
        'argv': ['/srv/app/.venv/bin/gunicorn', '-c', '/srv/app/gunicorn.conf.py', '-b', '0.0.0.0:8123', 'app:app'],
        'directory': '/srv/app'}
    program = '[program:voice]\ncommand=/srv/app/.venv/bin/gunicorn "app:create_app()" -k gthread\ndirectory=/srv/app\n'
    assert service_env.runner_file_command('supervisord', program, 'voice') == {
        'argv': ['/srv/app/.venv/bin/gunicorn', 'app:create_app()', '-k', 'gthread'], 'directory': '/srv/app'}
    assert service_env.runner_file_command('supervisord', program, 'other') is None
    assert service_env.runner_file_command('systemd', '[Service]\nExecStart=\n', None) is None
