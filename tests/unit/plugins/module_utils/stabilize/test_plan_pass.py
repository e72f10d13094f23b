"""The service pass' options, decided once in Python (plan.pass_vars, plan.service_apply_args), and the preview of that
pass from the diagnosis' own call (plan.use_preview): held to the roles that carry them out."""

import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import plan as stabilize

ROOT = Path(__file__).resolve().parents[5]
INPUTS = {'worker_class': 'auto', 'port': '', 'env_file': '/srv/app/.env', 'log_file': '', 'chdir': '/srv/app',
          'python': '/srv/venv/bin/python', 'service_dir': '/var/lib/gd/app', 'extra_logs': [],
          'eventlet_hub': 'selects', 'eventlet_retry': False, 'allow_sync_fallback': True, 'fingerprint': 'f1',
          'stamp': '20260101T000000Z', 'archive_dir': '/var/lib/gd/app/log-archive', 'workers': 0, 'timeout': 0}
VALUES = {'app': 'app:app', 'chdir': '/srv/app', 'python': '/srv/venv/bin/python', 'name': 'app',
          'service_dir': '/var/lib/gd/app', 'manager': 'auto', 'supervisorctl': '', 'supervisord_conf': '',
          'env_file': '/srv/app/.env', 'user': '', 'group': '', 'unit_dir': '/etc/systemd/system', 'program_dir': '',
          'workers': 0, 'timeout': 0, 'log_file': '', 'grace': 10, 'archive_keep': 5}
HEALTHY = {'verdict': 'healthy', 'port': 8123, 'causes': [],
           'settings': {'pid': 4242, 'values': {'worker_class': {'value': 'sync', 'source': 'command line'},
                                                'bind': {'value': ['0.0.0.0:8123'], 'source': 'command line'}}}}
SERVICE = {'manager': 'standalone', 'why': 'nothing else runs it', 'running': True, 'pid': 4242, 'started': 1700000000.5,
           'worker_class': 'sync', 'env_file_port': '8123', 'run_as': None, 'current_settings': None,
           'left_to_clean': {'port': 8123, 'left': []}}
QUIET = {'changed': False, 'name': 'app', 'manager': 'standalone', 'worker_class': 'sync', 'changed_files': [],
         'restarted': False, 'started': False, 'pid': 4242, 'log_files': ['/var/lib/gd/app/run/gunicorn.log']}


def planned(before=None, service=None, inputs=None):
    return stabilize.decide(dict(INPUTS, **(inputs or {})), before or HEALTHY, dict(SERVICE, **(service or {})), {},
                            VALUES)


def role_task_args():
    task = yaml.safe_load((ROOT / 'roles/gunicorn_service/tasks/main.yml').read_text())[0]
    return task['sre.gunicorn_doctor.service_apply']


def variable(template):
    return re.fullmatch(r'\{\{ gunicorn_service_(\w+)(?: or omit)? \}\}', template).group(1)


def test_the_options_are_the_ones_gunicorn_service_sends_for_its_variables():
    args = role_task_args()
    archive = args.pop('archive')
    sent = dict(stabilize.SERVICE_OPTIONS, **dict((option, option) for option in stabilize.OMITTED_WHEN_EMPTY))
    assert dict((option, variable(template)) for option, template in args.items()) == sent
    assert dict((option, variable(template)) for option, template in archive.items()) == dict(stabilize.ARCHIVE_OPTIONS)
    omitted = sorted(option for option, template in args.items() if template.endswith(' or omit }}'))
    assert omitted == sorted(stabilize.OMITTED_WHEN_EMPTY)


def test_the_variables_stabilize_leaves_to_gunicorn_service_have_its_defaults():
    defaults = yaml.safe_load((ROOT / 'roles/gunicorn_service/defaults/main.yml').read_text())
    for name, value in stabilize.SERVICE_DEFAULTS.items():
        assert defaults['gunicorn_service_' + name] == value, name


def test_service_yml_hands_the_role_every_pass_variable_as_the_plan_made_it():
    include = yaml.safe_load((ROOT / 'roles/stabilize/tasks/service.yml').read_text())[0]
    handed = include['vars']
    own = {'worker_class': '{{ __stabilize_class }}', 'force_restart': '{{ __stabilize_force_restart | default(false) }}'}
    names = set(stabilize.pass_vars(planned(), VALUES)) | set(own)
    assert sorted(handed) == sorted('gunicorn_service_' + name for name in names)
    for name in names:
        assert handed['gunicorn_service_' + name] == own.get(name, '{{ __stabilize.plan.pass_vars.%s }}' % name)


def test_the_pass_options_follow_the_plan():
    args = stabilize.preview_args(planned())
    assert args['worker_class'] == 'sync' and args['service_dir'] == '/var/lib/gd/app'
    assert args['environment'] == {'PORT': '8123'} and args['bind'] == '0.0.0.0:$PORT' and args['workers'] == 1
    assert args['archive'] == {'archive_dir': '/var/lib/gd/app/log-archive', 'stamp': '20260101T000000Z', 'keep': 5}
    assert 'user' not in args and 'group' not in args and args['force_restart'] is False
    run_as = {'user': 'app', 'group': 'app', 'uid': 1000, 'source': 'its master'}
    mine = stabilize.preview_args(planned(service={'run_as': run_as}))
    assert mine['user'] == 'app' and mine['group'] == 'app'


def test_a_pass_the_diagnosis_call_found_changing_nothing_is_not_made_again():
    plan = planned()
    done = stabilize.use_preview(plan, {'args': stabilize.preview_args(plan), 'result': QUIET}, 15)
    assert done['previewed'] is True and done['passes'] == ['sync'] and done['verify'] is False
    assert done['actions'] == [] and done['verified']['master'] == 4242
    summary = stabilize.summarize(done, 'web1', False)
    assert summary['summary'] == 'stable: /healthz answers 200 on port 8123, master 4242 (-k sync, standalone)'


@pytest.mark.parametrize('change', [
    {'result': dict(QUIET, changed=True, changed_files=['/var/lib/gd/app/run.sh'])},   # a runner file was edited
    {'result': dict(QUIET, changed=True, started=True)},                              # it does not run
    {'result': dict(QUIET, changed=True, dirs=['/var/lib/gd/app'])},                  # a directory's mode
    {'args': {'worker_class': 'sync'}},                                               # other options than the plan's
    {'result': dict(QUIET, pid=5555)},                                                # not the master that served
])
def test_the_pass_runs_unless_the_very_same_pass_changes_nothing(change):
    plan = planned()
    preview = dict({'args': stabilize.preview_args(plan), 'result': QUIET}, **change)
    assert stabilize.use_preview(plan, preview, 15) == plan


@pytest.mark.parametrize('before, service, inputs', [
    (dict(HEALTHY, verdict='down'), None, None),                                    # verify must look
    (HEALTHY, {'left_to_clean': {'port': 8123, 'left': [{'kind': 'stop', 'what': 'pid 7'}]}}, None),  # a clean-up
    (HEALTHY, {'env_file_port': '9000'}, None),                                      # PORT to fix in the env file
    (HEALTHY, None, {'worker_class': 'eventlet'}),                                   # eventlet wanted
    (dict(HEALTHY, causes=[{'id': 'boot_exception', 'severity': 'fail'}]), None, None),  # unfixable
])
def test_a_plan_with_more_than_the_sync_pass_never_takes_the_preview(before, service, inputs):
    plan = planned(before, service, inputs)
    if plan['unfixable'] or 'pass_vars' not in plan:
        assert not stabilize.only_the_pass(plan)
        return
    preview = {'args': stabilize.preview_args(plan), 'result': QUIET}
    assert stabilize.use_preview(plan, preview, 15)['previewed'] is False
