"""process.master_settings: a master's effective settings with their sources, also when setproctitle hides its
command line and blanks its environment (then the runner's command and environment stand in)."""

import pytest
import psutil

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import process

GONE = 2 ** 22 + 12345   # above pid_max: no such process, no environ, no sockets


def info(cmdline, cwd):
    return {'pid': GONE, 'ppid': 1, 'name': 'gunicorn', 'cmdline': cmdline, 'cwd': cwd, 'create_time': 0,
            'username': 'app'}


def test_a_titled_master_takes_the_units_command_and_environment(tmp_path):
    (tmp_path / 'prod.py').write_text('import os\nbind = "0.0.0.0:" + os.environ["PORT"]\ntimeout = 120\n')
    unit = {'source': '/etc/systemd/system/voice.service', 'manager': 'systemd', 'env': {'PORT': '8123'},
            'command': {'argv': ['/srv/.venv/bin/gunicorn', '-c', 'prod.py', '-w', '3', 'app:app'],
                        'directory': str(tmp_path)}}
    runner = {'kind': 'systemd', 'detail': 'voice.service', 'pid': 1}
    found = process.master_settings(psutil, info(['gunicorn: master [app:app]'], str(tmp_path)), runner, [unit])
    assert found['settings']['bind'] == ['0.0.0.0:8123']
    assert found['settings_sources']['bind'] == 'config file %s:2' % (tmp_path / 'prod.py')
    assert (found['settings']['timeout'], found['settings']['workers']) == (120, 3)
    assert found['settings_sources']['workers'] == 'command line'
    assert found['settings_from'][:3] == ['its process title "gunicorn: master [app:app]" (setproctitle hides the '
                                          'command line)', 'the command of /etc/systemd/system/voice.service',
                                          'the environment of /etc/systemd/system/voice.service']


def test_a_titled_master_without_a_runner_keeps_its_title_and_the_env_file(tmp_path):
    (tmp_path / 'gunicorn.conf.py').write_text('import os\nworkers = int(os.environ.get("WEB_CONCURRENCY", "1"))\n')
    found = process.master_settings(psutil, info(['gunicorn:', 'master', '[app:app]'], str(tmp_path)), None, [],
                                    env_file_env={'WEB_CONCURRENCY': '4'})
    assert found['settings']['app'] == 'app:app' and found['settings_sources']['app'] == 'process title'
    assert found['settings']['workers'] == 4
    assert 'the environment of doctor_env_file' in found['settings_from']


def test_a_renamed_title_is_not_taken_for_an_app_spec(tmp_path):
    found = process.master_settings(psutil, info(['gunicorn: master [voice-prod]'], str(tmp_path)), None, [])
    assert found['settings']['app'] is None


def test_a_plain_master_reads_argv_and_says_so(tmp_path):
    found = process.master_settings(psutil, info(['gunicorn', '-t', '9', 'app:app'], str(tmp_path)), None, [])
    assert found['settings']['timeout'] == 9 and found['settings_sources']['timeout'] == 'command line'
    assert found['settings_from'] == ['its command line', 'not its environment (unreadable)']
    assert found['config_file'] is None


def test_a_titled_process_belongs_to_the_app_by_its_title_or_its_directory(tmp_path):
    titled = info(['gunicorn: worker [app:app]'], str(tmp_path))
    assert process.belongs_to_app(titled, 'app:app', str(tmp_path)).startswith('app spec app:app in its process title')
    renamed = info(['gunicorn: master [voice-prod]'], str(tmp_path))
    assert process.belongs_to_app(renamed, 'app:app', str(tmp_path))
    assert not process.belongs_to_app(renamed, 'app:app', '/elsewhere')


@pytest.mark.parametrize("argv, may", [
    (["/srv/app/.venv/bin/python", "-m", "gunicorn", "AgentLocator.main:app"], True),
    (["gunicorn: master [AgentLocator.main:app]"], True),
    (["/usr/bin/python3", "main.py"], True),          # a stray candidate: stray_reason reads its cwd
    (["flask", "run"], True),
    (["/usr/sbin/sshd", "-D"], False),                 # the rest of the host: its command line is all that is read
    (["bash", "-c", "while true; do sleep 1; done"], False),
    ([], False),
])
def test_only_a_gunicorn_or_a_python_or_flask_command_has_its_cwd_and_user_read(argv, may):
    assert bool(process.may_be_the_apps(argv)) is may
