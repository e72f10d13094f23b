"""What runs the service now (module_utils/stabilize/service_found.py, service_info's answer), on this host's real
process table: nothing runs the test app, so the standalone runner is asked and found stopped."""

import psutil
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import service_found


def params(tmp_path, **changes):
    (tmp_path / 'app').mkdir(exist_ok=True)
    p = dict(app='NoSuchApp.main:app', chdir=str(tmp_path / 'app'), manager='standalone', name='nosuchapp',
             pidfile=str(tmp_path / 'svc' / 'run' / 'gunicorn.pid'), start_script=str(tmp_path / 'svc' / 'run.sh'),
             unit_dir=str(tmp_path / 'units'), env_file='', user='', group='', python='', program_dir='',
             supervisorctl='', supervisord_conf='')
    p.update(changes)
    return p


def test_a_service_nothing_runs_is_found_stopped_with_the_port_of_its_env_file(tmp_path):
    env = tmp_path / 'app' / '.env'
    (tmp_path / 'app').mkdir()
    env.write_text('PORT=8123\nGUNICORN_CMD_ARGS="--workers 2"\n')
    found = service_found.find(psutil, params(tmp_path, env_file=str(env)), None)
    assert (found['manager'], found['running'], found['pid'], found['state']) == ('standalone', False, None, 'STOPPED')
    assert found['env_file_port'] == '8123' and found['env_file_cmd_args'] is True
    assert found['current_settings'] is None and found['run_as'] is None and found['runner_file'].endswith('run.sh')


@pytest.mark.parametrize('changes, says', [
    ({'pidfile': ''}, 'pidfile is required for the standalone runner'),
    ({'user': 'no-such-user-here'}, 'nosuchapp: user no-such-user-here does not exist on this host'),
])
def test_a_service_that_cannot_be_run_as_asked_is_refused_with_the_reason(tmp_path, changes, says):
    with pytest.raises(service_found.NotFound, match=says):
        service_found.find(psutil, params(tmp_path, **changes), None)
