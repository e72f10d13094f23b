"""service_apply's pass on real files (module_utils/stabilize/service_pass.py), the service not started: check mode
writes nothing, a pass writes only what differs and says changed only then, keeps an owner-only copy of what a
file held, and roll_back puts each file back with its mode (a created one removed)."""

import os
import stat

import psutil
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import service_pass

SERVICE = {'manager': 'standalone', 'why': 'given', 'running': False, 'pid': None, 'state': 'STOPPED', 'run_as': None}


def params(tmp_path, **changes):
    p = dict(service=SERVICE, app='AgentLocator.main:app', chdir=str(tmp_path / 'app'), python='/usr/bin/python3',
             name='agentlocator', service_dir=str(tmp_path / 'svc'), worker_class='sync', workers=1, timeout=0,
             keepalive=0, log_file='', env_file='', environment={'PORT': '8123'}, unit_dir=str(tmp_path / 'units'),
             program_dir='', supervisorctl='', supervisord_conf='', start=False, force_restart=False, grace=10,
             start_timeout=30, archive={'archive_dir': '', 'stamp': '20260101T000000Z', 'keep': 5})
    p.update(changes)
    return p


def run(p, check_mode=False, diff=False):
    return service_pass.apply(psutil, p, None, check_mode, diff)


def test_check_mode_says_what_would_be_written_and_writes_nothing(tmp_path):
    out = run(params(tmp_path), check_mode=True, diff=True)
    assert out['changed'] and sorted(out['changed_files']) == sorted(out['files'])
    assert any('-b 0.0.0.0:${PORT}' in d['after'] for d in out['diff'])
    assert not (tmp_path / 'svc').exists()


def test_a_second_pass_changes_nothing_and_a_changed_file_is_backed_up_owner_only(tmp_path):
    first = run(params(tmp_path))
    script = tmp_path / 'svc' / 'run.sh'
    assert first['changed'] and stat.S_IMODE(script.stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / 'svc' / 'run').stat().st_mode) == 0o750
    assert first['undo']['files'] == {str(script): '', str(tmp_path / 'svc' / 'runner.env'): ''}
    again = run(params(tmp_path))
    assert not again['changed'] and again['changed_files'] == [] and again['undo']['files'] == {}
    # The file a user edited: written again, what it held kept owner-only.
    script.write_text('#!/bin/sh\necho mine\n')
    script.chmod(0o755)
    third = run(params(tmp_path))
    assert third['changed_files'] == [str(script)]
    backup = third['undo']['files'][str(script)]
    assert open(backup).read() == '#!/bin/sh\necho mine\n' and stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    assert third['undo']['before'][str(script)]['mode'] == '0755'


def test_roll_back_puts_each_file_back_with_its_mode_and_removes_what_the_pass_created(tmp_path):
    (tmp_path / 'svc').mkdir()
    script = tmp_path / 'svc' / 'run.sh'
    script.write_text('#!/bin/sh\necho mine\n')
    script.chmod(0o755)
    out = run(params(tmp_path))
    assert out['undo']['run'] == '20260101T000000Z'
    back = service_pass.roll_back(psutil, out['undo'], None)
    assert back['restored'] == [str(script)] and back['removed'] == [str(tmp_path / 'svc' / 'runner.env')]
    assert script.read_text() == '#!/bin/sh\necho mine\n' and stat.S_IMODE(script.stat().st_mode) == 0o755
    assert not (tmp_path / 'svc' / 'runner.env').exists()
    # Not started (start: false): the files go back, the service is left alone.
    assert back['done'] is True and back['state'] == 'stopped' and back['actions'] == []


def test_a_value_that_would_inject_fails_before_anything_is_written(tmp_path):
    with pytest.raises(service_pass.PassError, match='chdir: a line break or another control character'):
        run(params(tmp_path, chdir=str(tmp_path) + '\nExecStartPre=/bin/true'))
    assert not (tmp_path / 'svc').exists()


def test_a_pass_not_given_service_info_finds_the_service_itself_in_the_same_call(tmp_path):
    """One call on the host: without `service` the pass asks what service_info would (nothing runs the app here)."""
    (tmp_path / 'app').mkdir()
    out = run(params(tmp_path, service=None, manager='standalone', user=None, group=None))
    assert out['manager'] == 'standalone' and out['previous_pid'] is None and out['run_as'] == 'root'
    assert out['changed'] and (tmp_path / 'svc' / 'run.sh').is_file()
    assert not run(params(tmp_path, service=None, manager='standalone', user=None, group=None))['changed']


def test_a_service_that_cannot_be_found_as_asked_fails_the_pass_before_anything_is_written(tmp_path):
    (tmp_path / 'app').mkdir()
    with pytest.raises(service_pass.PassError, match='no-such-user-here'):
        run(params(tmp_path, service=None, manager='standalone', user='no-such-user-here', group=None))
    assert not (tmp_path / 'svc').exists()


@pytest.mark.parametrize('key', ['unit_dir', 'supervisorctl', 'supervisord_conf', 'program_dir'])
def test_every_value_the_role_used_to_check_on_the_controller_is_checked_on_the_host(tmp_path, key):
    with pytest.raises(service_pass.PassError, match='%s: a line break' % key):
        run(params(tmp_path, **{key: str(tmp_path) + '\nx'}))
    assert not (tmp_path / 'svc').exists()
