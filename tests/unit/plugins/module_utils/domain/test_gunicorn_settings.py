"""gunicorn_settings.effective: the settings gunicorn really runs with, each with its source.

The oracle is gunicorn itself: each case starts the venv's real gunicorn with `--print-config` (it
computes the configuration, imports a trivial app, prints and exits) in a directory with the case's
config file and environment, and the same case goes through effective() without running anything."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn_settings
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain.gunicorn_settings import effective

APP = 'def app(environ, start_response):\n    start_response("200 OK", [])\n    return [b"ok"]\n'
# Our key -> the name --print-config prints.
PRINTED = {'bind': 'bind', 'workers': 'workers', 'worker_class': 'worker_class', 'threads': 'threads',
           'worker_connections': 'worker_connections', 'timeout': 'timeout', 'graceful_timeout': 'graceful_timeout',
           'keepalive': 'keepalive', 'preload': 'preload_app', 'daemon': 'daemon', 'pidfile': 'pidfile',
           'error_logfile': 'errorlog', 'access_logfile': 'accesslog', 'loglevel': 'loglevel',
           'capture_output': 'capture_output', 'raw_env': 'raw_env'}


def read(path):
    with open(path) as f:
        return f.read()


# The versions we support (23 to 27): the test venv's gunicorn, and the oldest and newest from venvs.py.
ORACLE_VERSIONS = ('test venv', '23.0.0', '27.0.1')
ORACLE = {'python': sys.executable}


@pytest.fixture(autouse=True, params=ORACLE_VERSIONS)
def oracle(request):
    """Every case is checked against each supported gunicorn's own --print-config."""
    if request.param == 'test venv':
        ORACLE['python'] = sys.executable
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[4] / 'integration'))
        import venvs
        try:
            ORACLE['python'] = venvs.venv('gunicorn==%s' % request.param)
        except Exception as e:   # no package index here: the test venv's gunicorn still checks every case
            pytest.skip('gunicorn %s cannot be installed: %s' % (request.param, str(e)[:200]))
    yield request.param
    ORACLE['python'] = sys.executable


def gunicorn_says(cwd, argv, environ):
    env = {'PATH': os.environ['PATH']}
    env.update(environ)
    done = subprocess.run([ORACLE['python'], '-m', 'gunicorn', '--print-config'] + argv, cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    printed = {}
    for line in done.stdout.splitlines():
        name, dummy, value = line.partition('=')
        printed[name.strip()] = value.strip()
    return printed


def case(tmp_path, argv, environ=None, config=None, config_name='gunicorn.conf.py'):
    (tmp_path / 'a.py').write_text(APP)
    if config is not None:
        (tmp_path / config_name).write_text(config)
    environ = environ or {}
    ours = effective(['gunicorn'] + argv, environ, str(tmp_path), read)
    theirs = gunicorn_says(tmp_path, argv, environ)
    for key, name in PRINTED.items():
        if key in ours['computed']:
            continue
        value, shown = ours['settings'][key], theirs[name]
        if key == 'worker_class':   # printed as gunicorn's class path or as given
            assert gunicorn_settings.gunicorn.normalize_worker_class(shown) == value
        else:
            assert str(value) == shown, (key, value, shown)
    return ours


def test_defaults_only(tmp_path):
    ours = case(tmp_path, ['a:app'])
    assert ours['config_file'] is None
    assert set(ours['sources'].values()) == {'default', 'command line'}
    assert ours['sources']['app'] == 'command line'


def test_the_default_config_file_with_a_literal_bind(tmp_path):
    ours = case(tmp_path, ['a:app'], config='bind = "0.0.0.0:5000"\nworkers = 3\ntimeout = 5\npreload_app = True\n')
    assert ours['settings']['bind'] == ['0.0.0.0:5000']
    assert ours['sources']['bind'] == 'config file %s:1' % (tmp_path / 'gunicorn.conf.py')
    assert ours['sources']['timeout'] == 'config file %s:3' % (tmp_path / 'gunicorn.conf.py')


def test_a_bind_computed_from_port_in_the_service_environment(tmp_path):
    config = 'import os\nport = os.environ.get("PORT", "8000")\nbind = [f"0.0.0.0:{port}"]\n' \
             'workers = int(os.getenv("WEB_CONCURRENCY", "2"))\nworker_class = "gthread"\nthreads = 8\n'
    ours = case(tmp_path, ['a:app'], environ={'PORT': '9123'}, config=config)
    assert ours['settings']['bind'] == ['0.0.0.0:9123'] and ours['settings']['workers'] == 2
    assert ours['settings']['threads'] == 8


def test_gunicorn_cmd_args_override_the_file_and_the_command_line_overrides_both(tmp_path):
    ours = case(tmp_path, ['-w', '4', 'a:app'], environ={'GUNICORN_CMD_ARGS': '--timeout 17 --workers 2 -b :7000'},
                config='workers = 3\ntimeout = 9\nbind = "0.0.0.0:5000"\n')
    assert (ours['settings']['workers'], ours['sources']['workers']) == (4, 'command line')
    assert (ours['settings']['timeout'], ours['sources']['timeout']) == (17, 'GUNICORN_CMD_ARGS')
    assert ours['sources']['bind'] == 'GUNICORN_CMD_ARGS'


def test_config_named_by_c_and_by_gunicorn_cmd_args(tmp_path):
    (tmp_path / 'conf').mkdir()
    ours = case(tmp_path, ['-c', 'conf/prod.py', 'a:app'], config='timeout = 11\n', config_name='conf/prod.py')
    assert ours['config_file'] == str(tmp_path / 'conf' / 'prod.py') and ours['settings']['timeout'] == 11
    (tmp_path / 'gunicorn.conf.py').write_text('timeout = 99\n')   # not loaded when a config is named
    ours = case(tmp_path, ['a:app'], environ={'GUNICORN_CMD_ARGS': '--config conf/prod.py'})
    assert ours['settings']['timeout'] == 11


def test_env_and_daemon_settings(tmp_path):
    ours = case(tmp_path, ['-e', 'A=1', '--env', 'B=2', '--capture-output', '--log-level', 'debug', 'a:app'],
                config='raw_env = ["C=3"]\ndaemon = False\naccesslog = "-"\n')
    assert ours['settings']['raw_env'] == ['A=1', 'B=2']


def test_what_only_running_the_file_can_tell_is_computed_not_guessed(tmp_path):
    (tmp_path / 'gunicorn.conf.py').write_text(
        'import multiprocessing, os\nworkers = multiprocessing.cpu_count() * 2 + 1\n'
        'bind = "0.0.0.0:" + os.environ["PORT"]\nif os.environ.get("SLOW"):\n    timeout = 120\n')
    ours = effective(['gunicorn', 'a:app'], {}, str(tmp_path), read)
    assert ours['settings']['workers'] is None and 'multiprocessing.cpu_count() * 2 + 1' in ours['computed']['workers']
    assert 'PORT is not set in the service environment' in ours['computed']['bind']
    assert ours['computed']['timeout'] == 'set under a condition at line 5'
    assert ours['sources']['workers'].endswith('gunicorn.conf.py:2')


def test_a_config_file_that_is_not_python_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / 'gunicorn.conf.py').write_text('bind = \n')
    ours = effective(['gunicorn', 'a:app'], {}, str(tmp_path), read)
    assert ours['problems'] == ['config file %s cannot be read: it does not parse: invalid syntax (line 1)'
                                % (tmp_path / 'gunicorn.conf.py')]
    assert ours['settings']['bind'] == ['127.0.0.1:8000']


@pytest.mark.parametrize('text', ['--timeout "17', ''])
def test_gunicorn_cmd_args_that_do_not_split(tmp_path, text):
    ours = effective(['gunicorn', 'a:app'], {'GUNICORN_CMD_ARGS': text}, str(tmp_path), read)
    assert bool(ours['problems']) == bool(text)


# --- what the settings mean -----------------------------------------------------------------------------------
@pytest.mark.parametrize('argv, expected', [
    (['gunicorn: master [AgentLocator.main:app]'], ('master', 'AgentLocator.main:app')),
    (['gunicorn:', 'worker', '[AgentLocator.main:app]'], ('worker', 'AgentLocator.main:app')),   # psutil split it
    (['gunicorn: master [voice-prod]'], ('master', 'voice-prod')),                                # -n voice-prod
    (['gunicorn', 'a:app'], None),
    (['/venv/bin/python', '-m', 'gunicorn', 'a:app'], None),
    (['gunicorn: arbiter'], None),
])
def test_process_title(argv, expected):
    assert gunicorn_settings.process_title(argv) == expected


def test_socket_bind():
    assert gunicorn_settings.socket_bind(('0.0.0.0', 8123)) == '0.0.0.0:8123'
    assert gunicorn_settings.socket_bind(('::', 8123)) == '[::]:8123'
    assert gunicorn_settings.socket_bind('/run/app/app.sock') == 'unix:/run/app/app.sock'


def test_where_to_change_names_the_place_the_setting_comes_from():
    where = gunicorn_settings.where_to_change
    assert where('bind', 'config file /srv/app/gunicorn.conf.py:3', '"0.0.0.0:" + os.environ["PORT"]', '0.0.0.0:$PORT') \
        == 'in the config file /srv/app/gunicorn.conf.py:3 set `bind = "0.0.0.0:" + os.environ["PORT"]`'
    assert where('timeout', 'config file /c.py:9', '90', '90') == 'in the config file /c.py:9 set `timeout = 90`'
    assert where('bind', 'GUNICORN_CMD_ARGS', 'x', '0.0.0.0:8123', env_file='/etc/app.env', old='0.0.0.0:5000') == \
        'in GUNICORN_CMD_ARGS (set in /etc/app.env) replace -b 0.0.0.0:5000 with -b 0.0.0.0:8123'
    assert where('bind', 'command line', 'x', '0.0.0.0:$PORT', runner={'kind': 'systemd', 'detail': 'app.service'},
                 old='127.0.0.1:8123') == ('in ExecStart= of the unit app.service (then systemctl daemon-reload and '
                                           'restart) replace -b 127.0.0.1:8123 with -b 0.0.0.0:$PORT')
    assert where('timeout', 'default', 'x', '60', runner={'kind': 'supervisord', 'detail': 'supervisord -c x'}) == \
        'in command= of the supervisord program that runs it (then supervisorctl update) add --timeout 60'
    assert where('timeout', 'default', 'x', '60', runner={'kind': 'supervisord', 'program': 'voice'}) == \
        'in command= of [program:voice] (then supervisorctl update) add --timeout 60'
    activated = gunicorn_settings.SOCKET_ACTIVATION + ' (LISTEN_FDS=1 in its environment)'
    assert where('bind', activated, 'x', '0.0.0.0:8123', runner={'kind': 'systemd', 'detail': 'voice.service'}) == (
        'gunicorn listens on the sockets socket activation passes it (LISTEN_FDS) and ignores -b and bind: listen on '
        '0.0.0.0:8123 in ListenStream= of the socket unit that activates voice.service (voice.socket unless its '
        'Sockets= names another; then systemctl daemon-reload and restart the socket and the service)')


def test_socket_activation_is_the_systemd_protocol_gunicorn_checks():
    assert gunicorn_settings.socket_activation({'LISTEN_FDS': '2', 'LISTEN_PID': '41'}, 41) == 2
    assert gunicorn_settings.socket_activation({'LISTEN_FDS': '1', 'LISTEN_PID': '40'}, 41) == 0   # meant for another
    assert gunicorn_settings.socket_activation({'LISTEN_FDS': 'x', 'LISTEN_PID': '41'}, 41) == 0
    assert gunicorn_settings.socket_activation({}, 41) == 0


def test_the_control_socket_of_gunicorn_25_is_no_bind():
    control = gunicorn_settings.control_socket
    assert control('/run/user/0/gunicorn.ctl', ['gunicorn', 'app:app'])
    assert control('/srv/ctl.sock', ['gunicorn', '--control-socket', '/srv/ctl.sock', 'app:app'])
    assert control('/srv/ctl.sock', ['gunicorn', '--control-socket=/srv/ctl.sock', 'app:app'])
    assert not control('/run/app/gunicorn.ctl', ['gunicorn', '--control-socket', '/srv/ctl.sock', 'app:app'])
    assert not control('/run/app/app.sock', ['gunicorn', 'app:app'])
    assert not control(('0.0.0.0', 8000), ['gunicorn', 'app:app'])
