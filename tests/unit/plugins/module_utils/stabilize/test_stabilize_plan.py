"""Stabilize's plan: every decision the role used to make in Jinja, as the role relies on it."""

import jinja2
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import plan as stabilize

INPUTS = {'worker_class': 'auto', 'port': '', 'env_file': '/srv/app/.env', 'log_file': '', 'chdir': '/srv/app',
          'python': '/srv/venv/bin/python', 'service_dir': '/var/lib/gd/app', 'extra_logs': [],
          'eventlet_hub': 'selects', 'eventlet_retry': False, 'allow_sync_fallback': True, 'fingerprint': 'f1',
          'stamp': '20260101T000000Z'}
BEFORE = {'verdict': 'down', 'failed_layer': 'port', 'port': 8123, 'causes': [{'id': 'wrong_port', 'severity': 'fail'}]}
SERVICE = {'manager': 'standalone', 'why': 'nothing else runs it', 'running': True, 'pid': 4242, 'started': 1700000000.5,
           'worker_class': 'sync', 'env_file_port': '8123', 'run_as': None}
PASS = {'name': 'app', 'manager': 'standalone', 'worker_class': 'sync', 'changed_files': ['/var/lib/gd/app/run.sh'],
        'restarted': True, 'started': False, 'restart_actions': ['stopped master 1', 'started master 2'],
        'log_files': ['/var/lib/gd/app/run/gunicorn.log']}


def decided(inputs=None, before=None, service=None, memory=None):
    return stabilize.decide(dict(INPUTS, **(inputs or {})), dict(BEFORE, **(before or {})),
                            dict(SERVICE, **(service or {})), memory or {})


# --- decide ---------------------------------------------------------------------------------------------

def test_port_comes_from_doctor_port_then_the_env_file_then_the_diagnosis():
    assert decided({'port': 9000})['port'] == 9000
    assert decided({'port': '9001'})['port'] == 9001
    assert decided(service={'env_file_port': '8124'})['port'] == 8124
    for unusable in ('0', '70000', 'abc', None):
        assert decided(service={'env_file_port': unusable})['port'] == 8123


def test_env_file_port_is_rewritten_only_when_it_differs_or_is_unusable():
    assert decided()['fix_env_port'] is False
    assert decided({'port': 9000})['fix_env_port'] is True
    assert decided(service={'env_file_port': 'abc'})['fix_env_port'] is True
    assert decided(service={'env_file_port': None})['fix_env_port'] is False
    assert decided({'env_file': '', 'port': 9000})['fix_env_port'] is False


def test_worker_class_follows_the_input_else_the_running_service():
    assert decided()['want'] == 'sync'
    assert decided(service={'worker_class': 'eventlet'})['want'] == 'eventlet'
    assert decided({'worker_class': 'sync'}, service={'worker_class': 'eventlet'})['want'] == 'sync'
    assert decided({'worker_class': 'gthread'})['want'] == 'sync'


def test_eventlet_starts_on_sync_unless_the_service_already_serves_on_eventlet():
    plan = decided({'worker_class': 'eventlet'})
    assert (plan['base'], plan['try_eventlet']) == ('sync', True)
    serving = decided({'worker_class': 'eventlet'}, before={'verdict': 'healthy'}, service={'worker_class': 'eventlet'})
    assert (serving['base'], serving['try_eventlet']) == ('eventlet', False)
    down = decided({'worker_class': 'eventlet'}, service={'worker_class': 'eventlet'})
    assert down['base'] == 'sync'


def test_runner_environment_holds_port_and_for_eventlet_the_hub():
    assert decided()['env'] == {'PORT': '8123'}
    assert decided({'worker_class': 'eventlet', 'eventlet_hub': 'poll'})['env'] == {
        'PORT': '8123', 'EVENTLET_NO_GREENDNS': 'yes', 'EVENTLET_HUB': 'poll'}


def test_an_earlier_eventlet_failure_with_the_same_pins_is_not_tried_again():
    memory = {'fingerprint': 'f1', 'at': '20250101T000000Z', 'reason': 'greenlet fails to build'}
    plan = decided({'worker_class': 'eventlet'}, memory=memory)
    assert plan['remembered'] and not plan['try_eventlet'] and plan['eventlet']['ok'] is False
    assert 'greenlet fails to build' in plan['eventlet']['reason'] and 'doctor_eventlet_retry=true' in plan['message']
    assert decided({'worker_class': 'eventlet', 'eventlet_retry': True}, memory=memory)['try_eventlet']
    assert decided({'worker_class': 'eventlet', 'fingerprint': 'f2'}, memory=memory)['try_eventlet']


def test_the_service_user_keeps_pids_and_old_logs():
    run_as = {'user': 'www-data', 'group': 'www-data', 'uid': 33, 'source': 'the running master'}
    plan = decided({'log_file': '/var/log/app.log', 'extra_logs': ['/tmp/x.log']}, service={'run_as': run_as})
    assert (plan['user'], plan['group'], plan['uid'], plan['keep_pids']) == ('www-data', 'www-data', '33', [4242])
    assert 'runs as www-data:www-data (the running master)' in plan['message']
    assert plan['log_paths'][0] == '/var/log/app.log' and plan['log_paths'][-2:] == ['/srv/app/nohup.out', '/tmp/x.log']
    assert plan['log_patterns'][0] == '/var/log/app.log.*'
    assert decided()['uid'] == '0' and decided(service={'pid': None})['keep_pids'] == []


def test_an_unfixable_cause_stops_the_plan_before_the_service_is_looked_at():
    before = dict(BEFORE, causes=[{'id': 'boot_exception', 'severity': 'fail', 'evidence': ['ImportError: x'],
                                   'remedy': 'install x'}, {'id': 'disk_full', 'severity': 'warn'}])
    plan = stabilize.decide(INPUTS, before)
    assert [c['id'] for c in plan['unfixable']] == ['boot_exception'] and 'port' not in plan
    done = stabilize.summarize(plan, 'web1', False)
    assert done['result'] == 'not_fixable' and done['record']['actions'] == [] and done['record']['port'] is None
    assert done['fail'] == ('not stabilized, nothing changed: boot_exception cannot be fixed by configuration. '
                            'boot_exception: ImportError: x - fix: install x')


# --- the passes -----------------------------------------------------------------------------------------

def test_a_pass_records_its_files_and_restart_and_verify_watches_only_after_a_change():
    plan = stabilize.record_pass(decided(), 'sync', PASS, False, 15)
    assert [a['action'] for a in plan['actions']] == ['wrote service file', 'restarted service']
    assert plan['actions'][0]['reason'] == 'the runbook starts with one canonical sync command (-k sync)'
    assert plan['verify_window'] == 15 and plan['after_log'] == '/var/lib/gd/app/run/gunicorn.log'
    quiet = dict(PASS, changed_files=[], restarted=False)
    assert stabilize.record_pass(decided(before={'verdict': 'healthy'}), 'sync', quiet, False, 15)['verify_window'] == 0
    assert stabilize.record_pass(decided(), 'sync', quiet, False, '15')['verify_window'] == 15  # before: down
    check = stabilize.record_pass(decided(), 'sync', PASS, True, 15)
    assert [a['action'] for a in check['actions']] == ['would write service file', 'would restart service']


def test_changes_are_recorded_in_order_and_force_a_restart():
    plan = stabilize.record_changes(decided({'port': 9000}), {'actions': [{'action': 'stopped process'}]},
                                    {'actions': [{'action': 'archived logs'}]}, True, ['/srv/app/.env'])
    assert [a['action'] for a in plan['actions']] == ['stopped process', 'archived logs', 'set PORT in the env file',
                                                      'replaced EVENTLET_HUB=select']
    assert plan['actions'][2]['reason'] == "it held '8123'; the platform expects 9000" and plan['force_restart']
    assert stabilize.record_changes(decided(), {}, {}, False, [])['force_restart'] is False


def test_the_environment_is_set_only_when_the_plan_needs_it_and_a_change_there_forces_the_restart():
    # The idempotent run skips environment.yml as one task: PORT is right and sync is wanted.
    assert decided()['set_environment'] is False
    assert decided({'port': 9000})['set_environment'] is True
    assert decided({'worker_class': 'eventlet'})['set_environment'] is True
    cleaned = stabilize.record_changes(decided({'port': 9000}), {'actions': [{'action': 'stopped process'}]}, {})
    assert cleaned['force_restart'] is False
    plan = stabilize.record_environment(cleaned, True, [])
    assert [a['action'] for a in plan['actions']] == ['stopped process', 'set PORT in the env file']
    assert plan['force_restart'] is True
    assert stabilize.record_environment(cleaned, False, [])['force_restart'] is False


# --- the end of the run ---------------------------------------------------------------------------------

def test_a_stable_run_is_summed_up_with_the_verified_master():
    plan = stabilize.record_pass(decided(), 'sync', PASS, False, 15)
    done = stabilize.summarize(plan, 'web1', False, after_report={'verdict': 'healthy', 'port': 8123, 'causes': []},
                               verified={'master': 77, 'worker_class': 'sync'})
    assert done['summary'] == 'stable: /healthz answers 200 on port 8123, master 77 (-k sync, standalone)'
    assert done['record']['after']['verdict'] == 'healthy' and done['record']['before']['causes'] == ['wrong_port']
    assert done['fail'] is None and done['lines'][1].startswith('wrote service file: /var/lib/gd/app/run.sh: ')


def test_check_mode_says_how_many_actions_would_be_taken():
    done = stabilize.summarize(stabilize.record_pass(decided(), 'sync', PASS, True, 15), 'web1', True,
                               verified={'skipped': True})
    assert done['summary'] == 'check mode, nothing changed: 2 action(s) would be taken'
    assert done['record']['after']['verdict'] == 'down' and done['record']['verified'] == {}


def test_eventlet_that_fails_falls_back_and_is_remembered():
    plan = stabilize.record_pins(decided({'worker_class': 'eventlet'}), {'requirements': ['eventlet==0.40.3']},
                                 True, False)
    plan = stabilize.eventlet_failed(plan, {'msg': 'verify failed', 'why': 'worker died',
                                            'evidence': ['Traceback', 'ImportError']}, 'Await /healthz 200')
    assert plan['eventlet']['reason'] == 'worker died [Traceback | ImportError]'
    assert plan['memory'] == {'fingerprint': 'f1', 'at': '20260101T000000Z', 'reason': plan['eventlet']['reason'],
                              'python': '/srv/venv/bin/python', 'pins': ['eventlet==0.40.3']}
    plan = stabilize.record_pass(plan, 'fallback', PASS, False, 15)
    assert plan['actions'][1]['reason'].startswith('eventlet failed (worker died [Traceback | ImportError]): back to')
    done = stabilize.summarize(plan, 'web1', False)
    assert done['result'] == 'sync_fallback' and done['fail'] is None
    assert done['summary'] == 'running on sync; eventlet failed because worker died [Traceback | ImportError]'
    strict = stabilize.summarize(dict(plan, inputs=dict(INPUTS, allow_sync_fallback=False)), 'web1', False)
    assert strict['fail'] == strict['summary'] + ' (doctor_allow_sync_fallback is false)'


def test_eventlet_that_runs_is_ok():
    plan = stabilize.record_pins(decided({'worker_class': 'eventlet'}), {'requirements': ['eventlet==0.40.3']},
                                 False, False)
    done = stabilize.summarize(stabilize.record_pass(plan, 'switch', PASS, False, 15), 'web1', False)
    assert done['eventlet']['ok'] is True and done['result'] == 'stabilized'


ROLLBACK = {'done': True, 'restored': ['/etc/supervisor/conf.d/app.conf'], 'removed': [], 'state': 'restarted'}


@pytest.mark.parametrize('rollback, rolled_back, says', [
    (ROLLBACK, {'master': 5}, 'runs again on its old files and answers /healthz'),
    (ROLLBACK, {'failed': True}, 'was restarted on its old files but does not answer /healthz (before this run: down)'),
    (dict(ROLLBACK, state='stopped', restored=[], removed=['/a', '/b']), {}, 'is stopped, as it was found'),
])
def test_a_failed_run_is_rolled_back_and_says_how_the_service_was_left(rollback, rolled_back, says):
    plan = stabilize.record_failure(decided(), {'msg': 'verify failed', 'why': 'SystemExit at import'}, 'Await /healthz')
    assert plan['roll_back']
    done = stabilize.summarize(plan, 'web1', False, rollback=rollback, rolled_back=rolled_back)
    assert done['result'] == 'rolled_back' and done['fail'] == done['summary']
    assert done['summary'].startswith('not stabilized: SystemExit at import (at: Await /healthz); rolled back: restored ')
    assert done['summary'].endswith('; the service ' + says) and done['record']['after']['verdict'] == 'unknown'


def test_a_failure_before_any_service_pass_fails_without_rollback():
    done = stabilize.summarize(stabilize.record_failure(decided(), {'msg': 'port 8123 is held by not this app'},
                                                        'Stop the strays'), 'web1', False)
    assert done['result'] == 'failed' and done['summary'] == (
        'not stabilized: port 8123 is held by not this app (at: Stop the strays)')


def test_a_rollback_gives_back_only_what_this_run_disabled_and_names_the_loops_it_cannot_restart():
    plan = stabilize.record_failure(decided(), {'msg': 'verify failed'}, 'Verify')
    program = {'kind': 'supervisord_program', 'program': 'old', 'file': '/etc/supervisor/conf.d/old.conf', 'done': True}
    strays = {'run': INPUTS['stamp'], 'disabled_programs': [program, dict(program, program='x', done=False)],
              'disabled_units': [], 'stopped': [{'pid': 7, 'kind': 'runner_loop', 'cmdline': 'bash keep.sh', 'signals': ['TERM']},
                                                {'pid': 8, 'kind': 'gunicorn_master', 'signals': ['TERM']}]}
    assert stabilize.runners_to_restore(plan, strays) == ([program], ['7 (bash keep.sh)'])
    # Another run's result (the role ran earlier in the play) is never this run's to give back.
    assert stabilize.runners_to_restore(plan, dict(strays, run='20250101T000000Z')) == ([], [])
    rollback = {'enabled': ['old (/etc/supervisor/conf.d/old.conf)'], 'not_restarted': ['7 (bash keep.sh)']}
    done = stabilize.summarize(plan, 'web1', False, rollback=rollback)
    assert done['result'] == 'rolled_back' and done['summary'] == (
        'not stabilized: verify failed (at: Verify); enabled again: old (/etc/supervisor/conf.d/old.conf); not started '
        'again: the shell loop 7 (bash keep.sh) that restarted the app beside its service (start it yourself if it was '
        'wanted)')


def test_a_failed_rollback_and_a_failed_fallback_name_both_reasons():
    plan = stabilize.record_failure(decided(), {'msg': 'boom'}, 'Verify')
    plan = stabilize.record_rollback_failure(plan, {'msg': 'copy failed'}, 'Put back')
    assert plan['failure'] == ('boom (at: Verify); the rollback failed too: copy failed (at: Put back) - see the '
                               'backups in /var/lib/gd/app/backup')
    plan = stabilize.eventlet_failed(decided({'worker_class': 'eventlet'}), {'msg': 'x' * 400}, 'Switch')
    plan = stabilize.record_failure(plan, {'msg': 'sync died'}, 'Verify')
    assert not plan['roll_back'] and plan['failure'].startswith(
        'eventlet failed (%s...) and the sync fallback' % ('x' * 297))
    assert plan['failure'].endswith('failed too: sync died (at: Verify); backups of the service files are in '
                                    '/var/lib/gd/app/backup')


# --- Jinja's filters, as the role used them ------------------------------------------------------------

@pytest.mark.parametrize('text', ['short', 'word ' * 61, 'word ' * 70, 'x' * 400, 'a b ' * 100])
def test_truncate_is_jinjas(text):
    assert stabilize.truncate(text) == jinja2.Environment().from_string('{{ t | truncate(300) }}').render(t=text)


@pytest.mark.parametrize('value', ['8000', 8000, '8000.0', 'abc', '', None, 7.9])
def test_to_int_is_jinjas(value):
    assert stabilize.to_int(value) == int(jinja2.Environment().from_string('{{ v | int }}').render(v=value))


# --- the service's shape (issue 13 point 7) ---------------------------------------------------------------

def current_of(argv, environ, cwd, files):
    """service_info's current_settings of a master started with argv/environ in cwd, the files it may read."""
    from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn_settings
    from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import service_found

    def read(path):
        if path not in files:
            raise OSError('no such file')
        return files[path]
    return service_found.shape_settings(gunicorn_settings.effective(argv, environ, cwd, read), environ)


GUNICORN = ['/srv/venv/bin/python', '-m', 'gunicorn', 'AgentLocator.main:app']


def test_a_config_file_is_kept_and_each_setting_the_command_line_overrides_is_listed():
    conf = 'import os\nbind = "0.0.0.0:" + os.environ.get("PORT", "8000")\nworkers = 3\ntimeout = 90\nloglevel = "info"\n'
    current = current_of(GUNICORN + ['-c', 'gunicorn.conf.py'], {'PORT': '8123'}, '/srv/app',
                         {'/srv/app/gunicorn.conf.py': conf})
    plan = decided(service={'current_settings': current})
    shape = plan['shape']
    assert (shape['config'], shape['bind'], shape['refused']) == ('/srv/app/gunicorn.conf.py', '0.0.0.0:$PORT', None)
    overridden = dict((o['setting'], (o['was'], o['now'], o['source'])) for o in shape['overrides'])
    assert overridden['loglevel'][:2] == ('info', 'debug')
    # workers and timeout stay the config file's (doctor_workers / doctor_timeout are 0): left off the command line.
    assert [(k['setting'], k['value'], k['source']) for k in shape['kept']] == [
        ('workers', 3, 'config file /srv/app/gunicorn.conf.py:3'), ('timeout', 90, 'config file /srv/app/gunicorn.conf.py:4')]
    # bind follows PORT (8123, the plan's port) and sync is gunicorn's default: neither is overridden.
    assert not set(overridden) & {'bind', 'worker_class', 'workers', 'timeout'}
    assert 'keeps -c /srv/app/gunicorn.conf.py' in plan['message'] and 'keeps workers (config file' in plan['message']
    record = stabilize.summarize(plan, 'web1', False)
    assert record['record']['shape'] == shape
    assert 'kept a setting: timeout (config file /srv/app/gunicorn.conf.py:4): 90: the command line leaves it to ' \
        'config file /srv/app/gunicorn.conf.py:4' in record['lines']
    # An explicit doctor_workers / doctor_timeout wins: overridden, and listed.
    shape = decided({'workers': 1, 'timeout': 30}, service={'current_settings': current})['shape']
    overridden = dict((o['setting'], (o['was'], o['now'], o['source'])) for o in shape['overrides'])
    assert overridden['workers'] == (3, 1, 'config file /srv/app/gunicorn.conf.py:3') and overridden['timeout'][:2] == (90, 30)
    assert shape['kept'] == []


def test_gunicorn_cmd_args_are_kept_and_overridden_only_where_they_must_change():
    current = current_of(GUNICORN, {'GUNICORN_CMD_ARGS': '--workers 2 --timeout 45 -b 0.0.0.0:8000 -k eventlet'},
                         '/srv/app', {})
    # A unit's Environment=GUNICORN_CMD_ARGS=...: the takeover carries it.
    shape = decided(service={'current_settings': current, 'current_runner': 'systemd'})['shape']
    assert shape['cmd_args'] is True and shape['config'] is None
    assert [(o['setting'], o['source'], o['was'], o['now']) for o in shape['overrides']] == [
        ('bind', 'GUNICORN_CMD_ARGS', ['0.0.0.0:8000'], ['0.0.0.0:8123']),
        ('worker_class', 'GUNICORN_CMD_ARGS', 'eventlet', 'sync')]
    assert [(k['setting'], k['value']) for k in shape['kept']] == [('workers', 2), ('timeout', 45)]
    current = current_of(GUNICORN, {'GUNICORN_CMD_ARGS': '-b 0.0.0.0:8123 --timeout 60'}, '/srv/app', {})
    assert decided(service={'current_settings': current, 'env_file_cmd_args': True})['shape']['overrides'] == []


def test_command_line_settings_the_canonical_command_does_not_carry_are_named_never_dropped_silently():
    argv = GUNICORN + ['-k', 'gthread', '--threads', '8', '--graceful-timeout', '5', '--preload', '-e', 'API_TOKEN=s3cr3t',
                       '-b', '0.0.0.0:8123']
    plan = decided(service={'current_settings': current_of(argv, {}, '/srv/app', {})})
    overridden = dict((o['setting'], (o['was'], o['now'], o['source'])) for o in plan['shape']['overrides'])
    assert overridden['threads'] == (8, 1, 'command line') and overridden['graceful_timeout'] == (5, 30, 'command line')
    assert overridden['preload'] == (True, False, 'command line')
    # An -e value may be a secret: named by its variable only, in the plan and its message.
    assert overridden['raw_env'] == (['API_TOKEN'], [], 'command line')

    def paths(value, path=''):
        if isinstance(value, dict):
            return [p for k, v in value.items() for p in paths(v, path + '.' + str(k))]
        if isinstance(value, list):
            return [p for i, v in enumerate(value) for p in paths(v, '%s[%d]' % (path, i))]
        return [path] if 's3cr3t' in str(value) else []
    assert paths(plan) == [] and 'overrides threads (command line)' in plan['message']
    lines = stabilize.summarize(plan, 'web1', False)['lines']
    assert any(line.startswith('overrode a setting: threads (command line): 8 -> 1: the canonical command does not '
                               'carry it') for line in lines), lines
    # Left to gunicorn's default, or set in a config file the command keeps: nothing to say.
    plan = decided(service={'current_settings': current_of(GUNICORN + ['-b', '0.0.0.0:8123'], {}, '/srv/app', {})})
    assert not set(o['setting'] for o in plan['shape']['overrides']) & {'threads', 'graceful_timeout', 'preload', 'raw_env'}


def test_a_unix_socket_bind_behind_a_proxy_is_kept():
    current = current_of(GUNICORN + ['-b', 'unix:/run/app/app.sock'], {}, '/srv/app', {})
    plan = decided(service={'current_settings': current})
    assert (plan['shape']['bind'], plan['shape']['behind_proxy']) == ('unix:/run/app/app.sock', True)
    assert 'bind' not in [o['setting'] for o in plan['shape']['overrides']]
    assert '-b unix:/run/app/app.sock (behind the proxy on $PORT)' in plan['message']


@pytest.mark.parametrize('conf, says', [
    ('bind = compute_bind()\n', 'computes bind'),
    ('daemon = True\n', 'daemon = True is set by config file /srv/app/gunicorn.conf.py:1'),
])
def test_a_shape_that_cannot_be_kept_is_refused_and_nothing_changes(conf, says):
    current = current_of(GUNICORN + ['-c', 'gunicorn.conf.py'], {}, '/srv/app', {'/srv/app/gunicorn.conf.py': conf})
    plan = decided(service={'current_settings': current})
    assert says in plan['refused']
    done = stabilize.summarize(plan, 'web1', False)
    assert done['result'] == 'refused' and done['record']['actions'] == []
    assert done['fail'].startswith('not stabilized, nothing changed') and says in done['fail']


def test_gunicorn_cmd_args_the_new_runner_would_not_inherit_are_refused_not_dropped():
    current = current_of(GUNICORN, {'GUNICORN_CMD_ARGS': '--threads 4'}, '/srv/app', {})
    by_hand = decided(service={'current_settings': current, 'current_runner': 'shell'})
    assert 'GUNICORN_CMD_ARGS is set in the environment of the running master (started by shell)' in by_hand['refused']
    assert decided(service={'current_settings': current, 'current_runner': 'shell',
                            'env_file_cmd_args': True})['refused'] is None
    assert decided(service={'current_settings': current, 'current_runner': 'systemd'})['refused'] is None
    assert 'started by standalone' in decided(service={'current_settings': current,
                                                       'current_runner': 'standalone'})['refused']


def test_a_daemon_flag_of_the_command_being_replaced_is_no_refusal():
    current = current_of(GUNICORN + ['--daemon', '--pid', '/var/lib/gd/app/run/gunicorn.pid'], {}, '/srv/app', {})
    assert decided(service={'current_settings': current})['refused'] is None


def test_an_unreadable_config_file_is_refused():
    current = current_of(GUNICORN + ['-c', '/etc/app/gunicorn.conf.py'], {}, '/srv/app', {})
    assert 'cannot all be read' in decided(service={'current_settings': current})['refused']


def test_nothing_running_is_the_plain_canonical_command():
    shape = decided(service={'current_settings': None})['shape']
    assert (shape['config'], shape['bind'], shape['overrides'], shape['refused'], shape['kept']) == (
        None, '0.0.0.0:$PORT', [], None, [])


def test_a_verification_from_before_this_run_is_never_reported():
    """The role ran before in the play: its verify_result is still set. In a check-mode run (nothing verified) the
    report must not show that earlier verification as this run's."""
    earlier = {'master': 111, 'worker_class': 'sync', 'samples': 30, 'window': 15}
    plan = stabilize.record_pass(decided(), 'sync', PASS, True, 15, verified=earlier)
    assert plan['verified'] == {}
    done = stabilize.summarize(plan, 'web1', True, verified={'skipped': True})
    assert done['record']['verified'] == {} and done['result'] == 'check_mode'
    # Stopped before any pass (an unfixable cause): nothing verified either.
    assert stabilize.summarize(decided(), 'web1', False, verified=earlier)['record']['verified'] == {}
    # This run's first pass verified, then the second pass records it.
    mine = dict(earlier, master=222)
    second = stabilize.record_pass(plan, 'switch', dict(PASS, worker_class='eventlet'), False, 15, verified=mine)
    assert second['verified'] == mine
    assert stabilize.summarize(second, 'web1', False, verified=dict(mine, master=333))['record']['verified']['master'] == 333


# --- the idempotent path: the diagnosis is the evidence ----------------------------------------------------

HEALTHY = {'verdict': 'healthy', 'port': 8123, 'causes': [],
           'settings': {'pid': 4242, 'values': {'worker_class': {'value': 'sync', 'source': 'command line'},
                                                'bind': {'value': ['0.0.0.0:8123'], 'source': 'command line'}}}}
QUIET = dict(PASS, changed_files=[], restarted=False, started=False, pid=4242)


def test_nothing_changed_and_the_diagnosis_saw_this_master_serve_so_verify_does_not_look_again():
    plan = stabilize.record_pass(decided(before=HEALTHY), 'sync', QUIET, False, 15)
    assert plan['verify'] is False and plan['verified']['master'] == 4242
    assert plan['verified']['listen'] == '0.0.0.0:8123' and 'diagnosis' in plan['verified']['by']
    # A stale verify_result (the role ran before in the play) is not taken for this run's.
    done = stabilize.summarize(plan, 'web1', False, verified={'master': 111, 'worker_class': 'sync'})
    assert done['summary'] == 'stable: /healthz answers 200 on port 8123, master 4242 (-k sync, standalone)'
    assert done['record']['verified']['master'] == 4242 and done['record']['actions'] == []


@pytest.mark.parametrize('before, result', [
    (dict(HEALTHY, verdict='down'), QUIET),                                    # the diagnosis saw no stable 200
    (HEALTHY, dict(QUIET, pid=5555)),                                          # another master runs now
    (HEALTHY, dict(QUIET, worker_class='eventlet')),                          # the pass asks another class
    (dict(HEALTHY, port=9000), QUIET),                                         # the diagnosis judged another port
    (dict(HEALTHY, settings=None), QUIET),                                     # no master was seen
    (HEALTHY, dict(QUIET, restarted=True, changed_files=['/var/lib/gd/app/run.sh'])),  # a change: the whole window
])
def test_verify_looks_again_unless_the_diagnosis_saw_the_same_master_serve_and_nothing_changed(before, result):
    plan = stabilize.record_pass(decided(before=before), 'sync', result, False, 15)
    assert plan['verify'] is True and plan['verified'] == {}


def test_a_change_earlier_in_the_run_means_verify_watches_the_window():
    changed = stabilize.record_changes(decided(before=HEALTHY), {'actions': [{'action': 'stopped process'}]}, {},
                                       False, [])
    plan = stabilize.record_pass(changed, 'sync', QUIET, False, 15)
    assert plan['verify'] is True and plan['verify_window'] == 15


def test_the_clean_up_is_said_process_by_process_and_log_by_log():
    strays = {'summary': ['5150 python3 -m AgentLocator.main: runs the app module'],
              'actions': [{'action': 'stopped process', 'target': '5150 (python3 -m AgentLocator.main)', 'reason': 'x'}]}
    logs = {'archived': [{'path': '/srv/app/nohup.out', 'archived_as': '/var/lib/gd/app/log-archive/S/nohup.out.gz'}],
            'held': [{'path': '/var/log/app.log', 'pids': [4242, 4243]},
                     {'path': '/var/lib/gd/app/run/gunicorn.log', 'pids': [], 'why': 'written by the current run'}],
            'refused': [{'path': '/srv/app/fifo.log', 'why': 'not a regular file (a FIFO): not read'}], 'actions': []}
    assert stabilize.record_changes(decided(), strays, logs, False, [])['cleaned'] == [
        'stopped process: 5150 python3 -m AgentLocator.main: runs the app module',
        'archived: /srv/app/nohup.out -> /var/lib/gd/app/log-archive/S/nohup.out.gz',
        'stays: /var/log/app.log (written by pid 4242, 4243)',
        'stays: /var/lib/gd/app/run/gunicorn.log (written by the current run)',
        'not archived: /srv/app/fifo.log: not a regular file (a FIFO): not read']
    assert stabilize.record_changes(decided(), {}, {}, False, [])['cleaned'] == []
    would = dict(strays, actions=[dict(strays['actions'][0], action='would stop process')])
    assert stabilize.record_changes(decided(), would, {}, False, [])['cleaned'][0].startswith('would stop process: 5150 ')


def test_a_socket_activated_systemd_service_is_refused_a_socket_activated_process_elsewhere_is_not():
    current = dict(current_of(GUNICORN, {}, '/srv/app', {}), socket_activated=1)
    refused = decided(service={'current_settings': current, 'current_runner': 'systemd'})['refused']
    assert 'socket activation, LISTEN_FDS' in refused and 'ListenStream=' in refused
    assert decided(service={'current_settings': current, 'current_runner': 'shell'})['refused'] is None
    assert decided(service={'current_settings': dict(current, socket_activated=0),
                            'current_runner': 'systemd'})['refused'] is None


# --- the clean-up, skipped when the host has nothing left for it ------------------------------------------------

def test_the_clean_up_is_skipped_only_when_service_apply_found_nothing_left_on_the_plans_port():
    nothing = {'port': 8123, 'left': []}
    plan = decided(service={'left_to_clean': nothing})
    assert plan['clean_up'] is False and 'nothing to clean up' in plan['message']
    stray = {'port': 8123, 'left': [{'kind': 'stop', 'what': '5150 (python3 -m AgentLocator.main): the app module'}]}
    for left in (stray, None, {'port': 8123, 'left': [{'kind': 'log', 'what': '/var/log/app.log.1'}]},
                 {'port': 8123, 'left': [{'kind': 'port_holder', 'what': '77 (nginx): not this app'}]}):
        assert decided(service={'left_to_clean': left})['clean_up'] is True, left
    # Asked on the diagnosis' port, but the env file's PORT is the plan's: the clean-up runs and looks itself.
    assert decided(service={'env_file_port': '8124', 'left_to_clean': nothing})['clean_up'] is True
    assert 'nothing to clean up' not in decided(service={'left_to_clean': None})['message']


def test_behind_a_proxy_the_proxy_on_port_is_no_reason_to_clean_up():
    proxy = {'port': 8123, 'left': [{'kind': 'port_holder', 'what': '77 (nginx): not this app'}]}
    behind = {'behind_proxy': True}
    assert stabilize.clean_up_needed(proxy, 8123, behind) is False
    assert stabilize.clean_up_needed({'port': None, 'left': []}, 8123, behind) is False
    assert stabilize.clean_up_needed(dict(proxy, left=proxy['left'] + [{'kind': 'conflict', 'what': 'x'}]), 8123,
                                     behind) is True


def test_the_port_service_apply_looks_at_is_doctor_port_else_the_diagnosis_one():
    assert stabilize.clean_up_port(dict(INPUTS, port='9000'), BEFORE) == 9000
    assert stabilize.clean_up_port(INPUTS, BEFORE) == 8123
