# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The eventlet layer of the verdict: facts['eventlet'] -> checks and causes (see verdict.Layer).

Pure: the facts come from probes/eventlet.py, the version rules from eventlet_compat.py. Deprecation
notices (eventlet's EventletDeprecationWarning, gunicorn's "eventlet worker is DEPRECATED") are check
details, never causes; a healthy eventlet service with both variables valid gets no cause at all.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import shlex

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import eventlet_compat, gunicorn, gunicorn_settings
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import shared


def _shell_quote(value):
    return shlex.quote(value) if value and ' ' in value else value


def _version_line(ev):
    versions = ev['versions']
    parts = ['Python %s' % (ev.get('python') or '?')]
    parts += ['%s %s' % (name, versions[name]) for name in ('gunicorn', 'eventlet', 'greenlet', 'dnspython') if versions.get(name)]
    missing = [name for name in ('gunicorn', 'eventlet', 'greenlet') if not versions.get(name)]
    text = ', '.join(parts) + (' (not installed: %s)' % ', '.join(missing) if missing else '')
    return '%s in %s' % (text, ev.get('python_executable'))


def _sync_boots(facts):
    """Whether the app boots without eventlet: the boot layer's sync preload boot, else its dry import."""
    boot = facts.get('boot') or {}
    preload = boot.get('preload_boot')
    if preload and preload.get('listening') and preload.get('healthz_status') == 200:
        return True, 'gunicorn --preload -k sync on spare port %d answered %s with 200' % (
            preload['port'], facts['inputs']['healthz_path'])
    if preload and not preload.get('listening'):
        return False, 'gunicorn --preload -k sync did not boot either (see the boot layer)'
    dry = boot.get('dry_import') or {}
    if dry.get('ok') and dry.get('healthz_status') == 200:
        return True, 'the dry import of %s serves %s with 200' % (facts['inputs']['app'], facts['inputs']['healthz_path'])
    if dry:
        return False, 'the dry import of %s fails too (see the boot layer)' % facts['inputs']['app']
    return None, 'not known'


def _sync_command(facts):
    inputs = facts['inputs']
    ev = facts['eventlet']
    settings = ev.get('settings') or {}
    # Behind a front door the app keeps its socket or loopback port; $PORT is the proxy's.
    command = gunicorn.format_command(_shell_quote(inputs['python']), inputs['app'], '$PORT', worker_class='sync',
                                      workers=settings.get('workers') or 1, bind=shared.backend_bind(facts))
    return 'cd %s && PORT=%s %s' % (inputs['chdir'], facts['port']['port'], command)


def _where_env(ev):
    """Where the EVENTLET_* lines belong: the env file, else the unit / program that runs the app."""
    env = ev['env']
    if env.get('env_file'):
        return '%s (the env file the service reads)' % env['env_file']
    for view in env['next_start']:
        if 'systemd unit' in view['source']:
            return 'the unit %s as Environment= lines (then systemctl daemon-reload and restart)' % view['source'].split(' (')[0]
        if 'supervisord program' in view['source']:
            return 'environment= of %s (then supervisorctl update)' % view['source'].split(' (')[0]
        if view.get('runner_pid'):
            return 'the environment of the process that restarts gunicorn (%s), then restart it' % view['source']
    return 'the environment of the command that starts gunicorn (there is no env file, unit or supervisord program)'


def _env_views(ev):
    """The environments that matter: eventlet masters now, and what the runner sets next start."""
    env = ev['env']
    views = [v for v in env['running'] if '-k eventlet' in v['source']] + list(env['next_start'])
    if not views and env['running']:
        views = list(env['running'])
    if not views:
        views = [{'source': 'anywhere (no running master, no doctor_env_file, no systemd unit or supervisord program '
                            'runs the app)', 'EVENTLET_NO_GREENDNS': None, 'EVENTLET_HUB': None}]
    return views


def _eventlet_really_used(ev):
    return any(s['worker_class'] == 'eventlet' and s['source'] != 'doctor_worker_class' for s in ev['worker_class_sources'])


def _describe_settings(ev, sync):
    s = ev.get('settings')
    if not s:
        return 'no gunicorn master runs'
    calls, how = gunicorn_settings.concurrency(s)
    if gunicorn_settings.runs_as_gthread(s):
        detail = ('%s: at most %s concurrent call%s (each open media stream holds a thread); --timeout %s s bounds the '
                  'worker heartbeat' % (how, calls, '' if calls == 1 else 's', s['timeout']))
    elif sync:
        detail = ('%s: at most %s concurrent call%s (each open media stream holds a whole sync worker); --timeout %s s: '
                  'a call longer than that is killed mid-stream (WORKER TIMEOUT)' % (
                      how, calls, '' if calls == 1 else 's', s['timeout']))
    else:
        detail = ('%s: green threads, at most %s concurrent calls; --timeout %s bounds the worker heartbeat, so a '
                  'WORKER TIMEOUT means code blocked the hub' % (how, calls, s['timeout']))
    if ev.get('worker_timeouts'):
        detail += '; %d x WORKER TIMEOUT in the current run (reported as worker_timeout in the boot layer)' % ev['worker_timeouts']
    return detail


def _patch_fix(mp, sites, traced_calls):
    """Remedy values: the module that should patch first, and what to change to get there."""
    entry = mp.get('entry_file') or (sites[0]['file'] if sites else 'the entry module')
    keep = next((c for c in sites if c['file'] == entry and c['scope'] == 'module' and not c['before']), None)
    changes = []
    for c in sites:
        if c is keep:
            continue
        if keep is None and c['file'] == entry:
            changes.append('move the call at %s:%d up there' % (c['file'], c['line']))
            keep = c
        else:
            changes.append('remove the call at %s:%d' % (c['file'], c['line']))
    if keep is None:
        changes.insert(0, 'add `import eventlet` and `eventlet.monkey_patch()` at its top')
    if not sites and len(traced_calls) > 1:
        changes.append('remove the other calls (%s)' % ', '.join('%s:%d' % (c['file'], c['line']) for c in traced_calls[1:]))
    return {'where': entry, 'others': '; '.join(changes) or 'move the imports above it below the call'}


def judge(facts, layer):
    """Add the eventlet layer's checks and causes to `layer`: one helper per check, in ladder order."""
    ev = facts.get('eventlet')
    if ev is None:
        layer.check('eventlet checks', 'skip', 'not probed in this run')
        return
    if not ev['applies']:
        _judge_not_in_use(ev, layer)
        return
    found = {
        'causes': [],   # [id, evidence, severity(, values)] - added in ladder order at the end
        'versions_line': _version_line(ev),
        'log_name': ev.get('log_file') or 'the log',
        'boot': ev.get('boot'),
    }
    boot = found['boot']
    found['boot_error'] = bool(boot) and not (boot.get('listening') and boot.get('healthz_status') == 200)
    _judge_in_use(ev, layer)
    _judge_versions(ev, layer, found)
    env_lines = _judge_environment(ev, layer, found)
    _judge_conflicts(ev, layer, found)
    _judge_monkey_patch(ev, layer, found)
    layer.check('worker settings', 'pass', _describe_settings(ev, (ev.get('settings') or {}).get('worker_class') == 'sync'))
    fallback = _judge_boot(facts, ev, layer, found)
    values = {'python': ev.get('python') or 'this Python', 'pip_command': ev['pip_command'], 'pins': ', '.join(ev['recommended_pins']),
              'fallback': fallback, 'env_lines': env_lines, 'env_where_eventlet': _where_env(ev)}
    for cause in found['causes']:
        cause_id, evidence, severity = cause[:3]
        extra = dict(values, **(cause[3] if len(cause) > 3 else {}))
        layer.cause(cause_id, evidence, severity=severity, **extra)


def _judge_not_in_use(ev, layer):
    running = ', '.join('-k %s from %s' % (s['worker_class'], s['source']) for s in ev['worker_class_sources'])
    worker_class = (ev.get('settings') or {}).get('worker_class') or 'sync'
    layer.check('eventlet in use', 'skip', 'service runs %s; eventlet not in use (%s); %s' % (
        worker_class, running or 'no master, log line, runner config or doctor_worker_class names eventlet',
        _describe_settings(ev, worker_class == 'sync')))


def _judge_in_use(ev, layer):
    """1. Is eventlet in use, and gunicorn's / eventlet's own notices (information only)."""
    said = '; '.join('-k eventlet from %s' % s['source'] for s in ev['worker_class_sources'] if s['worker_class'] == 'eventlet')
    notes = list(ev['log']['deprecation'][-1:])
    if ev.get('gunicorn_notice') and not any('DEPRECATED' in n for n in notes):
        notes.append('gunicorn %s logs "%s"' % (ev['versions'].get('gunicorn'), ev['gunicorn_notice']))
    detail = said
    if notes:
        detail += '; note (information, not a fault): %s; %s' % (' / '.join(notes), eventlet_compat.FALLBACK)
    layer.check('eventlet in use', 'pass', detail)


def _judge_versions(ev, layer, found):
    """2. Versions against the compatibility table (and what the log says about them)."""
    causes, versions_line, log_name = found['causes'], found['versions_line'], found['log_name']
    log_errors = ev['log']['errors']
    problems = ev['problems']
    incompatible_lines = [e['line'] for e in log_errors if e['kind'] in ('incompatible', 'known_bad')]
    if problems:
        worst = 'fail' if any(p['severity'] == 'fail' for p in problems) else 'warn'
        layer.check('versions', worst, '%s: %s' % (versions_line, '; '.join(p['reason'] for p in problems)))
        evidence = ['%s: %s' % (versions_line, problems[0]['reason'])]
        for p in problems:
            evidence.append('%s %s -> %s (fixed by %s)' % (p['package'], p['version'] or '(not installed)', p['error'], p['pin']))
        evidence += ['%s: %s' % (log_name, line) for line in incompatible_lines[-2:]]
        evidence += ['source: %s' % src for src in problems[0]['sources'][:2]]
        causes.append(['eventlet_incompatible', evidence, worst])
    elif incompatible_lines:
        layer.check('versions', 'fail', '%s; but the log says: %s' % (versions_line, incompatible_lines[-1]))
        causes.append(['eventlet_incompatible', ['%s: %s' % (log_name, incompatible_lines[-1]), versions_line], 'fail'])
    else:
        layer.check('versions', 'pass', '%s: a combination that runs the eventlet worker (pins today: %s)' % (
            versions_line, ', '.join(ev['recommended_pins'])))
    found['problems'], found['incompatible_lines'] = problems, incompatible_lines


def _judge_environment(ev, layer, found):
    """3. EVENTLET_HUB and EVENTLET_NO_GREENDNS: as the running master has them and as the runner sets them.
    -> the env lines the remedies name."""
    causes, log_name, boot, boot_error = found['causes'], found['log_name'], found['boot'], found['boot_error']
    log_errors = ev['log']['errors']
    views = _env_views(ev)
    really = _eventlet_really_used(ev)
    hub_log = [e['line'] for e in log_errors if e['kind'] == 'hub_invalid']
    dns_log = [e['line'] for e in log_errors if e['kind'] == 'greendns']
    missing, invalid, notes = [], [], []
    for view in views:
        hub, dns = view.get('EVENTLET_HUB'), view.get('EVENTLET_NO_GREENDNS')
        for name, value in (('EVENTLET_NO_GREENDNS', dns), ('EVENTLET_HUB', hub)):
            if value is None:
                missing.append('%s is not set in %s' % (name, view['source']))
        why = eventlet_compat.hub_problem(hub, ev.get('hubs_available'), ev.get('platform_select'))
        if why:
            invalid.append('EVENTLET_HUB=%s in %s: %s' % (hub, view['source'], why))
        if dns is not None and not eventlet_compat.greendns_off(dns):
            note = ('EVENTLET_NO_GREENDNS=%s in %s leaves green DNS on: eventlet reads only "yes" '
                    '(eventlet/green/socket.py)' % (dns, view['source']))
            if dns_log:
                invalid.append(note)
            else:
                notes.append(note)
    if hub_log and not any(i.startswith('EVENTLET_HUB=') for i in invalid):   # set where no reader looked
        invalid.insert(0, 'the log says the hub cannot be loaded, though no environment read sets an invalid '
                       'EVENTLET_HUB: %s' % hub_log[-1])
    shown = ', '.join('%s: EVENTLET_NO_GREENDNS=%s EVENTLET_HUB=%s' % (
        v['source'], v.get('EVENTLET_NO_GREENDNS'), v.get('EVENTLET_HUB')) for v in views)
    hub_for_fix = (boot or {}).get('env', {}).get('EVENTLET_HUB') or eventlet_compat.RECOMMENDED_HUB
    env_lines = 'EVENTLET_NO_GREENDNS=yes and EVENTLET_HUB=%s' % hub_for_fix
    if invalid:
        severity = 'fail' if (really or hub_log or dns_log) else 'warn'
        layer.check('EVENTLET_* environment', severity, invalid[0])
        evidence = invalid + ['%s: %s' % (log_name, line) for line in (hub_log + dns_log)[-2:]]
        if boot and not boot_error:
            evidence.append('with %s the spare-port eventlet boot listened and answered 200' % env_lines)
        causes.append(['eventlet_env_invalid', evidence, severity])
    if missing:
        layer.check('EVENTLET_* set', 'warn', '; '.join(missing))
        causes.append(['eventlet_env_missing', missing, 'warn'])
    elif not invalid:
        layer.check('EVENTLET_* environment', 'pass', shown + ('; note: ' + '; '.join(notes) if notes else ''))
    return env_lines


def _judge_conflicts(ev, layer, found):
    """4. gevent / uvloop beside eventlet."""
    causes, boot, boot_error = found['causes'], found['boot'], found['boot_error']
    log_errors = ev['log']['errors']
    conflicts = ev['conflicts']
    if conflicts:
        names = ', '.join('%s %s' % (c['package'], c['version']) for c in conflicts)
        breaks = [e['line'] for e in log_errors if e['kind'] == 'async_conflict']
        if boot_error and boot.get('error_line') and any(c['package'] in boot['error_line'] for c in conflicts):
            breaks.append('spare-port eventlet boot: %s' % boot['error_line'])
        severity = 'fail' if breaks else 'warn'
        detail = '%s installed beside eventlet %s in %s (importlib.metadata)' % (
            names, ev['versions'].get('eventlet'), ev.get('python_executable'))
        layer.check('no gevent/uvloop', severity, detail)
        packages = [c['package'] for c in conflicts]
        causes.append(['async_lib_conflict', [detail] + breaks, severity, {
            'extra': '%s (unless the app itself imports %s)' % (' and '.join(packages), 'them' if len(packages) > 1 else 'it'),
            'pip_uninstall': '%s -m pip uninstall -y %s' % (_shell_quote(ev['python_executable']), ' '.join(packages))}])
    else:
        layer.check('no gevent/uvloop', 'pass', 'neither gevent nor uvloop is installed in %s' % ev.get('python_executable'))


def _judge_monkey_patch(ev, layer, found):
    """5. Where eventlet.monkey_patch() runs."""
    causes = found['causes']
    mp = ev['monkey_patch']
    sites = [c for c in mp['static'] if c['scope'] != 'main guard']
    traced = mp.get('traced') or {}
    traced_calls = traced.get('calls') or []
    late = ['%s:%d: eventlet.monkey_patch() after importing %s (not the first statement)' % (c['file'], c['line'], ', '.join(c['before']))
            for c in sites if c['before']]
    late += ['%s:%d: eventlet.monkey_patch() inside %s: it runs after the imports, when that is called' % (
        c['file'], c['line'], c['scope']) for c in sites if c['scope'].startswith('function')]
    if traced.get('imported_before'):
        late.append('the dry import: before the first eventlet.monkey_patch() (%s:%d) the app had imported %s' % (
            traced_calls[0]['file'], traced_calls[0]['line'], ', '.join(traced['imported_before'])))
    twice = []
    if len(sites) > 1:
        twice.append('%d eventlet.monkey_patch() calls in the package: %s' % (
            len(sites), ', '.join('%s:%d' % (c['file'], c['line']) for c in sites)))
    if len(traced_calls) > 1:
        twice.append('the dry import called eventlet.monkey_patch() %d times: %s' % (
            len(traced_calls), ', '.join('%s:%d' % (c['file'], c['line']) for c in traced_calls)))
    if late or twice:
        settings = ev.get('settings') or {}
        old_preload = settings.get('preload') and not eventlet_compat.at_least(ev['versions'].get('gunicorn'), '24')
        severity = 'fail' if late and old_preload else 'warn'
        evidence = late + twice
        if severity == 'warn':
            evidence.append('gunicorn %s -k eventlet patches before it imports the app, so the service itself runs '
                            'patched; tests, scripts and other runners import the app unpatched' % (
                                ev['versions'].get('gunicorn') or ''))
        layer.check('monkey_patch placement', severity, evidence[0])
        causes.append(['monkey_patch_misplaced', evidence, severity, _patch_fix(mp, sites, traced_calls)])
    elif sites or traced_calls:
        c = sites[0] if sites else traced_calls[0]
        layer.check('monkey_patch placement', 'pass', 'eventlet.monkey_patch() once, first, at %s:%d' % (c['file'], c['line']))
    else:
        layer.check('monkey_patch placement', 'pass', 'the app does not call eventlet.monkey_patch(); gunicorn\'s '
                    'eventlet worker patches before it imports the app')


def _judge_boot(facts, ev, layer, found):
    """7. The spare-port -k eventlet boot: "eventlet cannot run here" vs "the app cannot run". -> the fallback
    sentence of the remedies."""
    causes, boot, boot_error = found['causes'], found['boot'], found['boot_error']
    sync_ok, sync_how = _sync_boots(facts)
    fallback = eventlet_compat.FALLBACK[0].upper() + eventlet_compat.FALLBACK[1:] + '.'
    if boot is None and ev.get('boot_off'):
        layer.check('eventlet boot', 'skip', 'turned off (doctor_preload_boot=never): the app was not booted with '
                    '-k eventlet')
    elif boot is None:
        layer.check('eventlet boot', 'skip', 'not needed: %s' % ev.get('boot_skipped'))
    elif not boot_error:
        layer.check('eventlet boot', 'pass', 'gunicorn --preload -k eventlet on spare port %d with %s: listening after %s s, '
                    '%s -> 200' % (boot['port'], ' '.join('%s=%s' % kv for kv in sorted(boot['env'].items())),
                                   boot['listen_seconds'], facts['inputs']['healthz_path']))
    else:
        why = boot.get('error_line') or boot.get('class_uri') or (
            'did not reach "Listening at" within %s s' % boot['seconds'] if boot.get('timed_out') else
            'exited with code %s' % boot.get('exit_code') if boot.get('exited') else 'answered %s' % boot.get('healthz_status'))
        what = 'gunicorn --preload -k eventlet on spare port %d (%s): %s' % (
            boot['port'], ' '.join('%s=%s' % kv for kv in sorted(boot['env'].items())), why)
        if sync_ok:
            layer.check('eventlet boot', 'fail', '%s; sync boots (%s): keep -k sync and fix eventlet' % (what, sync_how))
            fallback = 'Until then keep the service on -k sync, which boots here (%s): %s. %s' % (
                sync_how, _sync_command(facts), fallback)
            if not any(c[0] in ('eventlet_incompatible', 'eventlet_env_invalid') for c in causes) and \
                    not any(c[0] == 'async_lib_conflict' and c[2] == 'fail' for c in causes):
                causes.append(['eventlet_incompatible', ['sync boots, eventlet does not: ' + what, found['versions_line']], 'fail'])
            else:
                for c in causes:
                    if c[0] in ('eventlet_incompatible', 'eventlet_env_invalid'):
                        c[1].append('sync boots, eventlet does not: %s' % what)
                        break
        else:
            layer.check('eventlet boot', 'fail' if found['problems'] or found['incompatible_lines'] else 'warn',
                        '%s; %s: fix the app first' % (what, sync_how))
    return fallback
