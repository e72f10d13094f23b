# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stabilize's decisions, made in one place: the roles' tasks only carry out the plan.

A plan is a plain dict. `decide` makes it from the inputs, the "before" diagnosis, service_info's answer
and what an earlier run remembered about eventlet; each later step (`record_changes`, `record_pass`, ...)
takes the plan and the results of the tasks that ran, and returns the next plan; `summarize` turns it into
the result, the summary and the stabilize report's record. Pure (no I/O): the stabilize_plan action runs it on the
controller, and the probe's `stabilize` preview on the host (stabilize/preview.py) to know which pass to check.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import re

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.net import is_loopback
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn

# Causes configuration cannot fix: stabilize stops before changing anything.
UNFIXABLE = ('boot_exception', 'disk_full', 'dev_server_at_import')
# What the eventlet worker needs in the runner's environment (hub: doctor_eventlet_hub, never "select").
EVENTLET_NO_GREENDNS = 'yes'
# The report's after when the run stopped before the "after" diagnosis.
UNKNOWN_AFTER = {'verdict': 'unknown', 'failed_layer': None, 'causes': []}
WHY = {
    'sync': 'the runbook starts with one canonical sync command',
    'eventlet': 'the service already serves on eventlet: keep it',
    'switch': 'sync is stable; switch to the wanted eventlet worker',
}


def to_int(value, default=0):
    """Jinja's int filter: ints, '8000', '8000.0'; anything else is `default`."""
    if isinstance(value, bool):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return default


def truncate(text, length=300, end='...', leeway=5):
    """Jinja's truncate filter (at a word boundary, with its leeway)."""
    text = '%s' % text
    if len(text) <= length + leeway:
        return text
    return text[:length - len(end)].rsplit(' ', 1)[0] + end


def valid_port(value):
    """A PORT read from the env file that names a port (1-65535)."""
    return value is not None and re.match('^[0-9]+$', '%s' % value) is not None and 0 < int(value) < 65536


def unfixable_causes(before):
    """The failing causes of the "before" diagnosis that configuration cannot fix."""
    return [c for c in before.get('causes') or [] if c.get('id') in UNFIXABLE and c.get('severity') == 'fail']


def wanted_class(worker_class, service):
    """doctor_worker_class when it is sync or eventlet, else what the running service uses (eventlet or sync)."""
    if worker_class in ('sync', 'eventlet'):
        return worker_class
    return 'eventlet' if service.get('worker_class') == 'eventlet' else 'sync'


def decide_port(port, service, before):
    """doctor_port, else PORT of the env file, else the diagnosis' port."""
    if '%s' % ('' if port is None else port):
        return to_int(port)
    if valid_port(service.get('env_file_port')):
        return int(service['env_file_port'])
    return before.get('port')


def remembered_failure(want, retry, memory, fingerprint):
    """An earlier run's eventlet failure with the same python, pins and hub: not tried again unless retry."""
    return want == 'eventlet' and not retry and (memory or {}).get('fingerprint', '') == fingerprint


def base_class(want, remembered, service, before):
    """The first worker class: sync, unless the service already serves on eventlet (and eventlet is wanted)."""
    keep = (want == 'eventlet' and not remembered and service.get('running')
            and service.get('worker_class') == 'eventlet' and before.get('verdict') != 'down')
    return 'eventlet' if keep else 'sync'


def eventlet_state(want, remembered, memory):
    reason = None
    if remembered:
        reason = ('an earlier run (%s) found: %s; it is not tried again with the same pins - set '
                  'doctor_eventlet_retry=true or change doctor_eventlet_requirements'
                  % (memory.get('at'), memory.get('reason')))
    return {'wanted': want == 'eventlet', 'attempted': False, 'ok': False if remembered else None, 'reason': reason}


def runner_environment(port, want, hub):
    """PORT and EVENTLET_* are stabilize's; the rest of the runner's environment stays on the host."""
    env = {'PORT': '%s' % port}
    if want == 'eventlet':
        env.update(EVENTLET_NO_GREENDNS=EVENTLET_NO_GREENDNS, EVENTLET_HUB=hub)
    return env


def old_logs(inputs):
    """The log files and globs the clean-up archives."""
    log_file, service_dir = inputs.get('log_file') or '', inputs['service_dir']
    own = [service_dir + '/run/gunicorn.log', service_dir + '/gunicorn.log', service_dir + '/console.log']
    paths = ([log_file] if log_file else []) + own + [inputs['chdir'] + '/nohup.out'] + list(inputs.get('extra_logs') or [])
    patterns = ([log_file + '.*'] if log_file else []) + [path + '.*' for path in own]
    return paths, patterns


# Runbook values the canonical command sets (gunicorn_service's vars: sync 60/30, eventlet 120/75).
RUNBOOK_TIMEOUTS = {'sync': (60, 30), 'eventlet': (120, 75), 'gthread': (60, 30)}


def _override(overrides, current, key, now, why):
    """Note that the canonical command sets `key` to `now` where the service set it otherwise (not by default)."""
    settings, sources = current['settings'], current['sources']
    source = sources.get(key) or 'default'
    if source != 'default' and settings.get(key) != now:
        overrides.append({'setting': key, 'was': settings.get(key), 'source': source, 'now': now, 'why': why})


# Runners whose environment stabilize keeps when it takes them over (carry_env). Its own standalone runner gives
# the master only runner.env and the env file (env_file_cmd_args).
KEEPS_ENVIRONMENT = ('systemd', 'supervisord')


def dropped_cmd_args(current, service):
    """Why GUNICORN_CMD_ARGS would be lost: set in a master started by hand (no runner whose environment stabilize
    keeps) and not in the env file the new runner reads. None when it is kept (or not set)."""
    if not current.get('cmd_args') or service.get('env_file_cmd_args') or \
            service.get('current_runner') in KEEPS_ENVIRONMENT:
        return None
    return ('GUNICORN_CMD_ARGS is set in the environment of the running master (started by %s), which the new runner '
            'does not inherit: put it in doctor_env_file (the runner reads it) or its settings in a config file'
            % (service.get('current_runner') or 'an unknown runner'))


# Settings the canonical command leaves to the service's config file or GUNICORN_CMD_ARGS when they set them (and
# doctor_workers / doctor_timeout are 0): stabilize has no reason to change them (issue 13 point 7).
KEPT_SETTINGS = ('workers', 'timeout', 'keepalive')


def kept_settings(current, workers, timeout):
    """The KEPT_SETTINGS the service sets itself (config file, GUNICORN_CMD_ARGS) and no input overrides."""
    explicit = {'workers': to_int(workers), 'timeout': to_int(timeout), 'keepalive': 0}
    return [key for key in KEPT_SETTINGS
            if current['sources'].get(key) not in (None, 'default', 'command line') and not explicit[key]]


# Settings an old command line may set that the canonical command does not carry, with gunicorn's defaults
# (gunicorn/config.py): each one set there is named as overridden, never dropped silently.
NOT_CARRIED = {'threads': 1, 'worker_connections': 1000, 'graceful_timeout': 30, 'preload': False, 'raw_env': []}
NOT_CARRIED_WHY = ('the canonical command does not carry it (gunicorn\'s default then): set it in a config file (-c) '
                   'or GUNICORN_CMD_ARGS to keep it')


def _not_carried(overrides, current):
    """The NOT_CARRIED settings the old command line set (raw_env: names only, service_found.shape_settings)."""
    for key, default in sorted(NOT_CARRIED.items()):
        if current['sources'].get(key) == 'command line' and current['settings'].get(key) not in (None, default):
            overrides.append({'setting': key, 'was': current['settings'][key], 'source': 'command line', 'now': default,
                              'why': NOT_CARRIED_WHY})


def _door_bind(binds, door):
    """The service's loopback bind the diagnosis' front door forwards to (its report's front_door.backend), or None."""
    backend = gunicorn.tcp_port((door or {}).get('backend'))
    return next((b for b in binds or [] if backend and gunicorn.tcp_port(b) == backend
                 and is_loopback(b.rpartition(':')[0].strip('[]'))), None)


def runner_shape(current, want, workers=0, timeout=0, port=None, service=None, door=None):
    """What the canonical command keeps of the running service and what it overrides (issue 13 point 7).

    current: service_info's current_settings (None: nothing runs, the plain canonical command). -> dict(config:
    the -c FILE kept (None), bind: '0.0.0.0:$PORT' or the unix socket kept, behind_proxy, kept: the settings left
    to the config file or GUNICORN_CMD_ARGS, overrides: each setting the command line overrides with where it was
    set, refused: why the shape cannot be kept (None), socket / backend_port: what verify samples behind the proxy).
    door: the diagnosis' front door (its report's front_door) - a loopback bind it forwards to is kept."""
    shape = {'config': None, 'bind': '0.0.0.0:$PORT', 'behind_proxy': False, 'overrides': [], 'refused': None,
             'cmd_args': False, 'kept': [], 'socket': '', 'backend_port': 0}
    if not current:
        return shape
    settings = current['settings']
    computed = set(current.get('computed') or [])
    if current.get('problems'):
        shape['refused'] = 'the settings of the running master cannot all be read: %s' % '; '.join(current['problems'])
    elif 'bind' in computed:
        shape['refused'] = ('%s computes bind in a way that cannot be known without running it: set it literally (or '
                            'from PORT) so stabilize can tell which bind to keep' % current.get('config_file'))
    elif dropped_cmd_args(current, service or {}):
        shape['refused'] = dropped_cmd_args(current, service or {})
    elif current.get('socket_activated') and 'systemd' in ((service or {}).get('manager'), (service or {}).get('current_runner')):
        # systemd passes the .socket unit's sockets at every start: gunicorn ignores the -b of any ExecStart.
        shape['refused'] = ('systemd passes it its listening sockets (socket activation, LISTEN_FDS): gunicorn ignores '
                            '-b, so a new command line cannot keep or change its bind - stabilize does not rewrite '
                            'socket units: set ListenStream= in the .socket unit, or remove it')
    elif settings.get('daemon') and current['sources'].get('daemon') not in ('command line', 'default'):
        # A --daemon on the command line goes with the command stabilize replaces (its standalone runner's own).
        shape['refused'] = ('daemon = True is set by %s: gunicorn has no option to turn it off on the command line, '
                            'and a daemonized master escapes its runner - remove it there' % current['sources'].get('daemon'))
    if shape['refused']:
        return shape
    shape['config'] = current.get('config_file')
    shape['cmd_args'] = bool(current.get('cmd_args'))
    shape['kept'] = [{'setting': key, 'value': settings.get(key), 'source': current['sources'][key]}
                     for key in kept_settings(current, workers, timeout)]
    sockets = [b for b in settings.get('bind') or [] if b.startswith('unix:')]
    behind = _door_bind(settings.get('bind'), door)
    if sockets:
        shape.update(bind=sockets[0], behind_proxy=True, socket=sockets[0][5:])
    elif behind:
        shape.update(bind=behind, behind_proxy=True, backend_port=gunicorn.tcp_port(behind))
    else:
        _override(shape['overrides'], current, 'bind', ['0.0.0.0:%s' % port], 'the platform routes to $PORT')
    runbook_timeout, keepalive = RUNBOOK_TIMEOUTS.get(want, (60, 30))
    kept = [k['setting'] for k in shape['kept']]
    _override(shape['overrides'], current, 'worker_class', want, 'the worker class stabilize runs')
    for key, now, why in (('workers', to_int(workers) or 1, 'doctor_workers'),
                          ('timeout', to_int(timeout) or runbook_timeout, 'doctor_timeout'),
                          ('keepalive', keepalive, 'the runbook\'s keep-alive')):
        if key not in kept:
            _override(shape['overrides'], current, key, now, why)
    _override(shape['overrides'], current, 'loglevel', 'debug', 'the log the doctor reads')
    _override(shape['overrides'], current, 'capture_output', True, 'tracebacks reach the log')
    _override(shape['overrides'], current, 'access_logfile', '-', 'the runbook\'s access log')
    _not_carried(shape['overrides'], current)
    return shape


def shape_actions(shape):
    """The stabilize report's lines for what the command keeps and each setting it overrides."""
    actions = []
    if shape.get('config'):
        actions.append({'action': 'kept the config file', 'target': shape['config'],
                        'reason': 'the service loads its settings from it: -c %s stays; only what must change is '
                        'set on the command line' % shape['config']})
    if shape.get('behind_proxy'):
        actions.append({'action': 'kept the socket bind' if shape.get('socket') else 'kept the loopback bind',
                        'target': shape['bind'], 'reason': 'the app is served on a %s behind the proxy that holds '
                        '$PORT; verified through it' % ('unix socket' if shape.get('socket') else 'loopback port')})
    for k in shape.get('kept') or []:
        actions.append({'action': 'kept a setting', 'target': '%s (%s)' % (k['setting'], k['source']),
                        'reason': '%r: the command line leaves it to %s' % (k['value'], k['source'])})
    for o in shape.get('overrides') or []:
        actions.append({'action': 'overrode a setting', 'target': '%s (%s)' % (o['setting'], o['source']),
                        'reason': '%r -> %r: %s' % (o['was'], o['now'], o['why'])})
    return actions


def say_plan(plan):
    """One line: what stabilize will do."""
    service, run_as = plan['service'], plan['service'].get('run_as')
    who = '%s:%s (%s)' % (run_as['user'], run_as['group'], run_as['source']) if run_as else 'root'
    line = '%s (%s); runs as %s; port %s; wanted -k %s, starting with -k %s' % (
        service.get('manager'), service.get('why'), who, plan['port'], plan['want'], plan['base'])
    if plan['remembered']:
        line += '; eventlet: %s' % plan['eventlet']['reason']
    shape = plan.get('shape') or {}
    if shape.get('refused'):
        line += '; refused, nothing will change: %s' % shape['refused']
    else:
        line += ''.join('; keeps %s' % what for what in (['-c ' + shape['config']] if shape.get('config') else [])
                        + (['-b ' + shape['bind'] + ' (behind the proxy on $PORT)'] if shape.get('behind_proxy') else []))
        line += ''.join('; keeps %s (%s)' % (k['setting'], k['source']) for k in shape.get('kept') or [])
        line += ''.join('; overrides %s (%s)' % (o['setting'], o['source']) for o in shape.get('overrides') or [])
        if plan.get('clean_up') is False:
            line += '; nothing to clean up (no earlier run, second runner or old log)'
    return line


def decide(inputs, before, service=None, memory=None, values=None):
    """The first plan. inputs: the role's variables without doctor_ (worker_class, port, env_file, log_file,
    chdir, service_dir, extra_logs, eventlet_hub, eventlet_retry, fingerprint, stamp); before: the diagnosis report;
    service: service_info's result (None when an unfixable cause stops the run first); memory: the earlier
    run's eventlet record ({} when none); values: the role's values for the service pass (pass_vars)."""
    plan = {'before': before, 'unfixable': unfixable_causes(before), 'actions': [], 'passes': [],
            'service_result': {}, 'verified': {}, 'failure': None, 'stage': 'decided', 'inputs': inputs,
            'after_log': inputs.get('log_file') or '',
            'eventlet': {'wanted': False, 'attempted': False, 'ok': None, 'reason': None}, 'previewed': False,
            # Whether the role has anything to carry out (fix.yml): not for an unfixable cause, a refused shape or a
            # pass the diagnosis' call already found changing nothing.
            'carry_out': False}
    if plan['unfixable'] or service is None:
        return plan
    memory = memory or {}
    want = wanted_class(inputs.get('worker_class'), service)
    remembered = remembered_failure(want, inputs.get('eventlet_retry'), memory, inputs.get('fingerprint'))
    port = decide_port(inputs.get('port'), service, before)
    found_port = service.get('env_file_port')
    run_as = service.get('run_as') or {}
    paths, patterns = old_logs(inputs)
    plan.update(
        service=service, want=want, remembered=remembered, port=port, base=base_class(want, remembered, service, before),
        eventlet=eventlet_state(want, remembered, memory), env=runner_environment(port, want, inputs.get('eventlet_hub')),
        fix_env_port=bool(inputs.get('env_file')) and found_port is not None
        and (not valid_port(found_port) or to_int(found_port) != to_int(port)),
        user=run_as.get('user') or '', group=run_as.get('group') or '', uid='%s' % (run_as.get('uid') or 0),
        keep_pids=[service['pid']] if service.get('pid') else [], started=service.get('started') or 0,
        log_paths=paths, log_patterns=patterns)
    plan['try_eventlet'] = want == 'eventlet' and plan['base'] == 'sync' and not remembered
    # PORT in the env file, the eventlet environment: skipped as one include when neither is to be set.
    plan['set_environment'] = plan['fix_env_port'] or want == 'eventlet'
    plan['shape'] = runner_shape(service.get('current_settings'), plan['base'], inputs.get('workers'),
                                 inputs.get('timeout'), port, service, before.get('front_door'))
    plan['refused'] = plan['shape']['refused']
    plan['clean_up'] = clean_up_needed(service.get('left_to_clean'), port, plan['shape'])
    plan['message'] = say_plan(plan)
    plan['carry_out'] = not plan['refused']
    if values:
        plan['pass_vars'] = pass_vars(plan, values)
    return plan


# service_apply state=found's options among the role's values (`values`: vars/main.yml's __stabilize_values).
FOUND_OPTIONS = ('app', 'chdir', 'manager', 'name', 'service_dir', 'supervisorctl', 'supervisord_conf', 'env_file',
                 'user', 'group', 'unit_dir', 'program_dir', 'python')


def found_args(inputs, values, before):
    """service_apply state=found's options: service_info's (the values set), with what the clean-up would look at
    (the port, the old logs and the archive) when the plan archives."""
    args = dict((key, values[key]) for key in FOUND_OPTIONS if values.get(key) not in (None, ''))
    if inputs.get('archive_dir'):
        paths, patterns = old_logs(inputs)
        args.update(clean={'port': clean_up_port(inputs, before) or None}, archive={
            'paths': paths, 'patterns': patterns, 'archive_dir': inputs['archive_dir'], 'stamp': inputs['stamp']})
    return dict(args, state='found')


def clean_up_port(inputs, before):
    """The port service_apply state=found looks at for holders that are not the app, before the service (and PORT in
    its env file) is known: doctor_port, else the diagnosis' port. decide_port may pick another: see clean_up_needed."""
    return decide_port(inputs.get('port'), {}, before)


def clean_up_needed(left_to_clean, port, shape):
    """Whether the clean-up (stop_strays with its archive) has anything to do: service_apply state=found's
    left_to_clean (clean_up.survey) holds what it would stop, disable, refuse or archive. A socket or loopback bind
    behind the proxy has no port to free (the proxy's holds it); otherwise a port other than the one looked at, or
    no answer, means the clean-up runs and looks itself."""
    if not isinstance(left_to_clean, dict):
        return True
    ignored = ('port_holder',) if shape.get('behind_proxy') else ()
    if not shape.get('behind_proxy') and to_int(left_to_clean.get('port')) != to_int(port):
        return True
    return any(item.get('kind') not in ignored for item in left_to_clean.get('left') or [])


# --- the service pass: gunicorn_service's variables, and the service_apply options they become -----------------
# roles/gunicorn_service: defaults/main.yml's values of the variables stabilize leaves to it, and tasks/main.yml's
# option for each variable (tests/unit/plugins/module_utils/stabilize/test_plan_pass.py holds both to the YAML).
SERVICE_DEFAULTS = {'keepalive': 0, 'start': True, 'start_timeout': 30}
SERVICE_OPTIONS = (('manager', 'manager'), ('app', 'app'), ('chdir', 'chdir'), ('python', 'python'), ('name', 'name'),
                   ('service_dir', 'dir'), ('worker_class', 'worker_class'), ('workers', 'workers'),
                   ('timeout', 'timeout'), ('keepalive', 'keepalive'), ('bind', 'bind'), ('config', 'config'),
                   ('keep', 'keep'), ('log_file', 'log_file'), ('env_file', 'env_file'),
                   ('environment', 'environment'), ('unit_dir', 'systemd_unit_dir'),
                   ('program_dir', 'supervisord_conf_dir'), ('supervisorctl', 'supervisorctl'),
                   ('supervisord_conf', 'supervisord_conf'), ('start', 'start'), ('force_restart', 'force_restart'),
                   ('grace', 'grace'), ('start_timeout', 'start_timeout'))
ARCHIVE_OPTIONS = (('archive_dir', 'archive_dir'), ('stamp', 'archive_stamp'), ('keep', 'archive_keep'))
# Sent only when set (`or omit`): unset, service_apply keeps the user and group the service was found running as.
OMITTED_WHEN_EMPTY = ('user', 'group')


def pass_vars(plan, values):
    """gunicorn_service's variables (without their gunicorn_service_ prefix) for a pass of this plan: service.yml
    hands them to the role as they are. The worker class and force_restart are each pass' own."""
    shape, inputs = plan['shape'], plan['inputs']
    return {
        'app': values['app'], 'chdir': values['chdir'], 'python': values['python'], 'name': values['name'],
        'dir': values['service_dir'], 'manager': plan['service']['manager'],
        # What the canonical command keeps of the service's shape (runner_shape): its -c FILE, its socket bind, and
        # the settings its config file or GUNICORN_CMD_ARGS sets (left there, not on the command line).
        'config': shape['config'] or '', 'bind': shape['bind'], 'keep': [k['setting'] for k in shape['kept']],
        'workers': to_int(values['workers']) or 1, 'timeout': values['timeout'], 'log_file': values['log_file'],
        'env_file': values['env_file'], 'environment': plan['env'], 'systemd_unit_dir': values['unit_dir'],
        'supervisord_conf_dir': values['program_dir'], 'supervisord_conf': values['supervisord_conf'],
        'supervisorctl': values['supervisorctl'], 'grace': values['grace'], 'archive_dir': inputs['archive_dir'],
        'archive_stamp': inputs['stamp'], 'archive_keep': values['archive_keep'],
        # Decided before the clean-up stopped the masters it may have come from.
        'user': plan['user'], 'group': plan['group']}


def service_apply_args(role_vars, worker_class, force_restart=False):
    """The options roles/gunicorn_service/tasks/main.yml sends service_apply for its variables `role_vars`."""
    role_vars = dict(SERVICE_DEFAULTS, worker_class=worker_class, force_restart=force_restart, **role_vars)
    args = dict((option, role_vars[var]) for option, var in SERVICE_OPTIONS)
    args.update((option, role_vars[option]) for option in OMITTED_WHEN_EMPTY if role_vars[option])
    args['archive'] = dict((option, role_vars[var]) for option, var in ARCHIVE_OPTIONS)
    return args


def only_the_pass(plan):
    """Whether the plan's one step is the sync pass (nothing to clean up, no environment to set, no eventlet): the
    pass a second run makes on a service stabilize already runs."""
    return not plan['unfixable'] and 'pass_vars' in plan and not plan['refused'] and not plan['clean_up'] \
        and not plan['set_environment'] and plan['base'] == 'sync' and not plan['try_eventlet']


def preview_args(plan):
    """service_apply's options for the plan's first pass (what the probe's preview checks)."""
    return service_apply_args(plan['pass_vars'], plan['base'])


def use_preview(plan, preview, window):
    """The plan after the pass the diagnosis' own call checked (the probe's `stabilize` preview, check mode), when
    that pass is the plan's only step, with the very options the plan sends, and it would change nothing while the
    diagnosis saw this master's stable 200 (no verify): the pass is recorded as made and `previewed`, and the role
    skips it - a second run on a stable service reaches nothing on the host after the diagnosis. Else the plan as
    it was: the pass runs."""
    result = (preview or {}).get('result') or {}
    if not only_the_pass(plan) or preview.get('args') != preview_args(plan) or result.get('changed') \
            or result.get('changed_files') or result.get('restarted') or result.get('started'):
        return plan
    done = record_pass(plan, plan['base'], result, False, window)
    if done['verify'] or done['actions']:
        return plan
    return _next(done, previewed=True, carry_out=False)


def _next(plan, **changes):
    plan = copy.deepcopy(plan)
    plan.update(changes)
    return plan


def record_changes(plan, strays, logs, port_fixed=False, hub_fixed=()):
    """The clean-up's actions (processes stopped, logs archived), then the environment's (record_environment)."""
    actions = list(strays.get('actions') or []) + list(logs.get('actions') or [])
    plan = _next(plan, actions=plan['actions'] + actions, cleaned=cleaned_lines(strays, logs))
    return record_environment(plan, port_fixed, hub_fixed)


def record_environment(plan, port_fixed, hub_fixed):
    """PORT and EVENTLET_HUB set in the runner's env files: either forces the restart that makes the master read them."""
    inputs, actions = plan['inputs'], []
    if port_fixed:
        actions.append({'action': 'set PORT in the env file', 'target': inputs['env_file'],
                        'reason': 'it held %r; the platform expects %s' % (plan['service'].get('env_file_port'), plan['port'])})
    if hub_fixed:
        actions.append({'action': 'replaced EVENTLET_HUB=select', 'target': ', '.join(hub_fixed),
                        'reason': 'eventlet has no hub "select" (it kills the worker); set %s' % inputs.get('eventlet_hub')})
    return _next(plan, actions=plan['actions'] + actions, force_restart=bool(port_fixed) or bool(hub_fixed))


def cleaned_lines(strays, logs):
    """What the clean-up (runbook 1.1) did, for the console: each process stopped and why, each log archived, and
    the logs that stay - a live process writes them, the current run wrote them, or they are no plain log file."""
    # stop_strays' actions and summary name the same processes, in the same order ("would stop" in check mode).
    lines = ['%s: %s' % (a['action'], line) for a, line in zip(strays.get('actions') or [], strays.get('summary') or [])]
    lines += ['archived: %s -> %s' % (a['path'], a['archived_as']) for a in logs.get('archived') or []]
    lines += ['stays: %s (%s)' % (h['path'], h.get('why') or 'written by pid %s' % ', '.join(map(str, h['pids'])))
              for h in logs.get('held') or []]
    return lines + ['not archived: %s: %s' % (r['path'], r['why']) for r in logs.get('refused') or []]


def record_pins(plan, info, installed, removed):
    """The eventlet attempt begins: the pins installed, the conflicting packages removed."""
    actions = []
    if installed:
        actions.append({'action': 'installed packages', 'target': ' '.join(info['requirements']),
                        'reason': 'the eventlet worker needs them on Python %s (pip ran as %s, the owner of the venv)'
                        % (info.get('python_version'), info.get('run_as'))})
    if removed:
        actions.append({'action': 'removed packages', 'target': ' '.join(info.get('remove') or []),
                        'reason': 'gevent/uvloop conflict with eventlet and nothing needs them (pip ran as %s)'
                        % info.get('run_as')})
    eventlet = dict(plan['eventlet'], attempted=True, pins=list(info.get('requirements') or []))
    return _next(plan, eventlet=eventlet, actions=plan['actions'] + actions, stage='eventlet')


def keep_verified(plan, verified):
    """The last verification that passed (a skipped or failed one - check mode, a rescue - keeps the one before).
    Only once this run recorded a pass that asked for one: before that (or when the diagnosis was the evidence),
    verify_result is an earlier run's (the role ran before in the play), never this one's."""
    if plan['passes'] and plan.get('verify', True) and verified and not verified.get('skipped') \
            and not verified.get('failed'):
        return _next(plan, verified=verified)
    return plan


def seen_by_the_diagnosis(plan, service_result):
    """`verified` from the diagnosis, when the pass changed nothing: seconds ago it saw this very master answer a
    stable 200 on the port the plan keeps (verdict not down), and the pass found the manager still running it with
    the worker class it asks for. None when any of that does not hold (then verify looks again)."""
    before = plan['before']
    settings = before.get('settings') or {}
    values = settings.get('values') or {}
    worker_class = (values.get('worker_class') or {}).get('value')
    if before.get('verdict') not in ('healthy', 'degraded') or to_int(before.get('port')) != to_int(plan.get('port')) \
            or not settings.get('pid') or service_result.get('pid') != settings['pid'] \
            or worker_class != service_result.get('worker_class'):
        return None
    bind = (values.get('bind') or {}).get('value') or []
    return {'master': settings['pid'], 'worker_class': worker_class,
            'listen': ', '.join(bind) if isinstance(bind, list) else bind,
            'by': 'the diagnosis of this run: a stable 200 from this master; nothing changed since'}


def pass_why(plan, purpose):
    if purpose == 'fallback':
        return 'eventlet failed (%s): back to the stable sync command' % truncate(plan['eventlet']['reason'])
    return WHY[purpose]


def record_pass(plan, purpose, service_result, check_mode, window, verified=None):
    """One pass of gunicorn_service: the files it wrote, its restart or start; how long verify must watch."""
    plan = keep_verified(plan, verified)
    worker_class = service_result.get('worker_class')
    why = '%s (-k %s)' % (pass_why(plan, purpose), worker_class)
    actions = [{'action': ('would write' if check_mode else 'wrote') + ' service file', 'target': path, 'reason': why}
               for path in service_result.get('changed_files') or []]
    target = '%s (%s)' % (service_result.get('name'), service_result.get('manager'))
    if service_result.get('restarted'):
        actions.append({'action': ('would restart' if check_mode else 'restarted') + ' service', 'target': target,
                        'reason': 'its configuration changed: ' + '; '.join(service_result.get('restart_actions') or [])})
    elif service_result.get('started'):
        actions.append({'action': ('would start' if check_mode else 'started') + ' service', 'target': target,
                        'reason': 'it was not running'})
    actions = plan['actions'] + actions
    # After a change verify watches the whole window. Nothing changed in this run (the idempotent path): the
    # diagnosis' stable 200 from the same master is the evidence, no second look; else one answer proves it serves.
    busy = (service_result.get('restarted') or service_result.get('started') or actions
            or plan['before'].get('verdict') == 'down')
    seen = None if busy or check_mode else seen_by_the_diagnosis(plan, service_result)
    log_file = plan['inputs'].get('log_file') or (service_result.get('log_files') or [''])[0]
    return _next(plan, actions=actions, service_result=service_result, verify_window=to_int(window) if busy else 0,
                 verify=seen is None, verified=seen or plan['verified'], after_log=log_file,
                 passes=plan['passes'] + [purpose])


def failure_reason(failed_result, failed_task):
    """`why` (verify's reason) or `msg` of the failed task, and where."""
    failed_result = failed_result or {}
    why = failed_result.get('why') or failed_result.get('msg') or 'unknown'
    return '%s (at: %s)' % (why, failed_task or '?')


def eventlet_failed(plan, failed_result, failed_task):
    """Eventlet did not come up: why (with verify's evidence), and the record the next run remembers."""
    failed_result = failed_result or {}
    reason = '%s' % (failed_result.get('why') or failed_result.get('msg') or 'unknown')
    evidence = failed_result.get('evidence') or []
    if evidence:
        reason += ' [%s]' % ' | '.join('%s' % line for line in evidence)
    eventlet = dict(plan['eventlet'], attempted=True, ok=False, reason=reason, failed_task=failed_task or '')
    inputs = plan['inputs']
    memory = {'fingerprint': inputs.get('fingerprint'), 'at': inputs.get('stamp'), 'reason': reason,
              'python': inputs.get('python'), 'pins': eventlet.get('pins', [])}
    return _next(plan, eventlet=eventlet, memory=memory, stage='fallback')


def record_failure(plan, failed_result, failed_task):
    """A step failed. In the sync fallback after eventlet failed: nothing to roll back (eventlet's files are
    gone already); else the service pass is rolled back."""
    reason = failure_reason(failed_result, failed_task)
    if plan.get('stage') == 'fallback':
        failure = ('eventlet failed (%s) and the sync fallback failed too: %s; backups of the service files are in %s/backup'
                   % (truncate(plan['eventlet']['reason']), reason, plan['inputs']['service_dir']))
        return _next(plan, failure=failure, stage='failed', roll_back=False)
    return _next(plan, failure=reason, stage='failed', roll_back=True)


def record_rollback_failure(plan, failed_result, failed_task):
    """The rollback failed too: the report still says both, and where the backups are."""
    msg = (failed_result or {}).get('msg') or 'unknown'
    failure = '%s; the rollback failed too: %s (at: %s) - see the backups in %s/backup' % (
        plan['failure'], msg, failed_task or '?', plan['inputs']['service_dir'])
    return _next(plan, failure=failure)


def rollback_text(rollback, rolled_back, healthz_path, before):
    """How the service was left after a rollback ('' when nothing was rolled back)."""
    if not rollback.get('done'):
        return ''
    if rollback.get('state') == 'stopped':
        state = 'is stopped, as it was found'
    elif rolled_back.get('master'):
        state = 'runs again on its old files and answers %s' % healthz_path
    else:
        state = 'was restarted on its old files but does not answer %s (before this run: %s)' % (
            healthz_path, before.get('verdict'))
    return '; rolled back: restored %s, removed %s; the service %s' % (
        ', '.join(rollback.get('restored') or []) or 'nothing', ', '.join(rollback.get('removed') or []) or 'nothing',
        state)


def runners_to_restore(plan, strays):
    """What a rollback gives back of this run's clean-up (its stop_strays result, `run` = this run's stamp): the
    second supervisord programs and systemd units it disabled, and the shell loops it stopped, which cannot be
    started again as they were (named only) -> (entries for stop_strays restore, loop descriptions)."""
    strays = strays or {}
    if not strays.get('run') or strays.get('run') != plan['inputs'].get('stamp'):
        return [], []
    entries = [e for e in list(strays.get('disabled_units') or []) + list(strays.get('disabled_programs') or [])
               if e.get('done')]
    loops = ['%s (%s)' % (e['pid'], (e.get('cmdline') or '')[:120]) for e in strays.get('stopped') or []
             if e.get('kind') == 'runner_loop' and e.get('signals')]
    return entries, loops


def runners_text(rollback):
    """What the rollback gave back of the clean-up ('' when nothing)."""
    text = ''
    if rollback.get('enabled'):
        text += '; enabled again: %s' % ', '.join(rollback['enabled'])
    if rollback.get('not_restarted'):
        text += ('; not started again: the shell loop %s that restarted the app beside its service (start it '
                 'yourself if it was wanted)' % ', '.join(rollback['not_restarted']))
    return text


def outcome(plan, check_mode, after_report, rollback, rolled_back, healthz_path):
    """-> (result, summary, after diagnosis, fail message or None)."""
    before, eventlet = plan['before'], plan['eventlet']
    if plan.get('refused'):
        summary = 'not stabilized, nothing changed: the service\'s shape cannot be kept: %s' % plan['refused']
        return 'refused', summary, before, summary
    if plan['unfixable']:
        summary = 'not stabilized, nothing changed: %s cannot be fixed by configuration' % ', '.join(
            c['id'] for c in plan['unfixable'])
        remedies = ' '.join('%s: %s - fix: %s' % (c['id'], (c.get('evidence') or [''])[0], c.get('remedy'))
                            for c in plan['unfixable'])
        return 'not_fixable', summary, before, '%s. %s' % (summary, remedies)
    if plan['failure']:
        summary = 'not stabilized: %s%s%s' % (plan['failure'], rollback_text(rollback, rolled_back, healthz_path, before),
                                              runners_text(rollback))
        after = dict(UNKNOWN_AFTER, port=before.get('port'))
        return ('rolled_back' if rollback.get('done') or rollback.get('enabled') else 'failed'), summary, after, summary
    after = after_report if (not check_mode and plan['actions'] and after_report) else before
    if check_mode:
        result, summary = 'check_mode', 'check mode, nothing changed: %d action(s) would be taken' % len(plan['actions'])
    elif eventlet['ok'] is False:
        result, summary = 'sync_fallback', 'running on sync; eventlet failed because %s' % eventlet['reason']
    else:
        verified, service_result = plan['verified'], plan['service_result']
        result, summary = 'stabilized', 'stable: %s answers 200 on port %s, master %s (-k %s, %s)' % (
            healthz_path, plan['port'], verified.get('master', '?'), verified.get('worker_class', '?'),
            service_result.get('manager', '?'))
    strict = eventlet['ok'] is False and not plan['inputs'].get('allow_sync_fallback')
    return result, summary, after, summary + ' (doctor_allow_sync_fallback is false)' if strict else None


def brief(report):
    """The part of a diagnosis the stabilize report keeps."""
    return {'verdict': report.get('verdict'), 'failed_layer': report.get('failed_layer'),
            'causes': [c.get('id') for c in report.get('causes') or []], 'port': report.get('port')}


def summarize(plan, host, check_mode, after_report=None, verified=None, rollback=None, rolled_back=None,
              healthz_path='/healthz'):
    """The run's end: its result, summary and the stabilize report's record; `fail` when the run must fail."""
    plan = keep_verified(plan, verified)
    rollback, rolled_back = rollback or {}, rolled_back or {}
    eventlet = plan['eventlet']
    if eventlet.get('attempted') and eventlet.get('ok') is None and not plan['failure']:
        eventlet = dict(eventlet, ok=True, reason=None)
    plan = _next(plan, eventlet=eventlet)
    result, summary, after, fail = outcome(plan, check_mode, after_report or {}, rollback, rolled_back, healthz_path)
    record = {'host': host, 'result': result, 'summary': summary, 'check_mode': bool(check_mode),
              'run': plan['inputs'].get('stamp'), 'before': brief(plan['before']), 'after': brief(after),
              'port': plan.get('port') if not plan['unfixable'] else None, 'service': plan['service_result'],
              'verified': plan['verified'], 'eventlet': eventlet, 'actions': plan['actions'], 'rollback': rollback,
              'shape': plan.get('shape')}
    lines = [summary] + ['%s: %s: %s' % (a.get('action'), a.get('target'), a.get('reason'))
                         for a in plan['actions'] + shape_actions(plan.get('shape') or {})]
    return _next(plan, result=result, summary=summary, record=record, lines=lines, fail=fail, stage='done')
