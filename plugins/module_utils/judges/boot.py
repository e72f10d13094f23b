# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The boot layer: the dry import, a dev server at import, the spare-port boot, the current run's boot
errors and worker timeouts (facts['boot'], the log)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn, gunicorn_settings
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import restart_history as history
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import process, shared, window


def judge(facts, layer):
    inputs = facts['inputs']
    boot = facts['boot']
    dry = boot['dry_import'] or {}
    master = shared.primary_master(facts)
    timeout = shared.setting(master, 'timeout', gunicorn.DEFAULTS['timeout'])
    events = shared.last_run_events(facts)

    _judge_dry_import(layer, inputs, boot, master, timeout)
    _judge_booting_workers(facts, layer, master)

    # The dev server at import: the ast scan, what the dry import saw, the log banner.
    # A file that does not parse cannot hide a call: it is named in the check, not taken for a dev server.
    calls = [c for c in boot['dev_server_calls'] if not c.get('syntax_error')]
    unparsed = ['%s:%d (%s)' % (c['file'], c['line'], c['code']) for c in boot['dev_server_calls'] if c.get('syntax_error')]
    runs = dry.get('run_calls') or []
    banner = [e['line'] for e in events if e['event'] in ('dev_server', 'dev_server_banner')][-2:]
    worker_ports = [s for s in (facts.get('listen') or {}).get('app_sockets', []) if s['app_role'].startswith('worker')]
    if calls or runs or banner:
        evidence = ['%s:%d: %s at import time (not under if __name__ == "__main__":)' % (c['file'], c['line'], c['code'])
                    for c in calls]
        evidence += ['the dry import called %s from %s:%d' % (r['kind'], r['file'], r['line']) for r in runs]
        evidence += banner
        evidence += ['worker %s listens on %s:%d (a dev server inside the worker)' % (s['pid'], s['address'], s['port'])
                     for s in worker_ports]
        layer.check('no dev server at import', 'fail', evidence[0])
        where = ', '.join('%s:%d' % (c['file'], c['line']) for c in calls) or \
            ', '.join('%s:%d' % (r['file'], r['line']) for r in runs) or 'see the log'
        layer.cause('dev_server_at_import', evidence, extra=where)
    else:
        layer.check('no dev server at import', 'pass', 'no app.run()/socketio.run() reachable at import' + (
            '; not parsed: %s' % ', '.join(unparsed) if unparsed else ''))

    _judge_preload_boot(layer, inputs, boot)

    # The log of the current run (or of the one before a crash loop's newest master).
    failed = [e['line'] for e in shared.boot_failures(facts)]
    found = [c for c in layer.causes if c['id'] in ('boot_exception', 'missing_env')]
    if failed and not found:
        tb = (facts['log'] or {}).get('tracebacks') or []
        evidence = failed[-2:] + ['last traceback: %s' % t['exception'] for t in tb[-1:] if t['exception']]
        env_name = _missing_env_in_tracebacks(tb)
        if env_name:
            layer.cause('missing_env', evidence + _crash_loop(facts), extra=env_name)
        else:
            layer.cause('boot_exception', evidence + _crash_loop(facts))
    elif failed:
        found[0]['evidence'] += failed[-1:] + _crash_loop(facts)
    timeouts = [e for e in events if e['event'] == 'worker_timeout']
    if timeouts:
        evidence = ['%d x WORKER TIMEOUT since the master started (timeout %d s, %s)' % (
            len(timeouts), timeout, timeout_source(master))]
        evidence += [e['line'] for e in timeouts[-3:]]
        evidence += ['during the stability window: %s' % r for r in window.worker_restarts(facts)]
        layer.check('no worker timeouts', 'fail', evidence[0])
        layer.cause('worker_timeout', evidence)
    elif facts.get('log'):
        layer.check('no worker timeouts', 'pass', 'no WORKER TIMEOUT since the master started')


def _judge_dry_import(layer, inputs, boot, master, timeout):
    """The dry import's check and causes; a check the user turned off is skipped, not judged."""
    dry = boot['dry_import'] or {}
    ran_as = '; ran as %s' % dry['run_as'] if dry.get('run_as') else ''
    error = dry.get('error')
    if boot.get('dry_import_off'):
        layer.check('dry import', 'skip', 'turned off (doctor_dry_import=false): the app was not imported')
    elif boot.get('dry_import_skipped'):
        layer.check('dry import', 'skip', 'not needed: %s' % boot['dry_import_skipped'])
    elif dry.get('over_limit'):
        # Stopped at the service's own --timeout: waiting any longer would prove nothing more.
        layer.check('dry import', 'fail', 'the import ran %s s and had not returned: stopped at the worker timeout%s'
                    % (dry['import_seconds'], ran_as))
        layer.cause('slow_boot', ['importing %s did not finish within %s s: the worker timeout is %s s (%s)' % (
            inputs['app'], dry['import_seconds'], dry['limit'], dry['limit_source'])],
            extra='%s s (the import ran longer than that and was stopped)' % dry['limit'])
    elif dry.get('stopped'):
        layer.check('dry import', 'skip', 'stopped after %s s of importing, unfinished: a worker of the service already '
                    'booted for longer than its worker timeout (see slow_boot)%s' % (dry['import_seconds'], ran_as))
    elif dry.get('timed_out'):
        layer.check('dry import', 'fail', 'the import did not finish within %s s%s' % (dry['seconds'], ran_as))
        layer.cause('slow_boot', ['importing %s did not finish within %s s (doctor_boot_timeout)' % (
            inputs['app'], dry['seconds'])], extra='%s s' % dry['seconds'])
    elif error:
        detail = '%s: %s' % (error['type'], error['message'])
        layer.check('dry import', 'fail', detail + ran_as)
        evidence = ['dry import of %s in %s: %s' % (inputs['app'], inputs['python'], detail)]
        evidence += ['  at ' + f for f in error.get('frames', [])[-3:]]
        if error.get('missing_env'):
            layer.cause('missing_env', evidence + ['%s is not set in the service environment' % error['missing_env']],
                        extra=error['missing_env'])
        else:
            layer.cause('boot_exception', evidence)
    else:
        seconds = dry.get('import_seconds', 0)
        detail = 'imported in %.2f s; %d routes; GET %s via test_client -> %s%s' % (
            seconds, len(dry.get('routes', [])), inputs['healthz_path'], dry.get('healthz_status'), ran_as)
        above = int(seconds) + 10
        values = {'extra': '%d s' % above, 'timeout_change': change_timeout(layer, master, above)}
        if seconds >= timeout:
            layer.check('dry import', 'fail', detail)
            layer.cause('slow_boot', ['importing %s takes %.1f s, the worker timeout is %d s (%s)' % (
                inputs['app'], seconds, timeout, timeout_source(master))], **values)
        elif seconds >= timeout / 2.0:
            layer.check('dry import', 'warn', detail)
            layer.cause('slow_boot', ['importing %s takes %.1f s, half of the worker timeout %d s (%s) or more' % (
                inputs['app'], seconds, timeout, timeout_source(master))], severity='warn', **values)
        else:
            layer.check('dry import', 'pass', detail)


def _judge_booting_workers(facts, layer, master):
    """A worker of the service still booting after its worker timeout (the window read its heartbeat): a slow boot
    seen on the service itself, whatever the dry import could show within that time."""
    slow = window.slow_boots(facts)
    if not slow:
        return
    worst = max(slow, key=lambda b: b['seconds'])
    limit = window.watch_of(facts)['boot_limit']
    evidence = ['worker %d of master %s has been booting for %.0f s and has not served yet (its heartbeat is untouched '
                'since its fork): the worker timeout is %s s (%s)' % (worst['pid'], worst['master'], worst['seconds'],
                                                                      limit, timeout_source(master))]
    evidence += ['worker %d: booting for %.0f s' % (b['pid'], b['seconds']) for b in slow if b is not worst][:3]
    found = next((c for c in layer.causes if c['id'] == 'slow_boot' and c['severity'] == 'fail'), None)
    if found:
        found['evidence'] += evidence
        return
    layer.causes[:] = [c for c in layer.causes if c['id'] != 'slow_boot']   # the half-timeout warning says less
    above = int(worst['seconds']) + 10
    layer.cause('slow_boot', evidence, extra='%d s' % above, timeout_change=change_timeout(layer, master, above))


def timeout_source(master):
    """'master 42, from config file /srv/app/gunicorn.conf.py:4' - where the timeout a verdict used came from."""
    if not master:
        return "gunicorn's default: no master runs"
    computed = (master.get('settings_computed') or {}).get('timeout')
    if computed and master['settings'].get('timeout') is None:
        return "gunicorn's default used: master %d's config file computes it (%s)" % (master['pid'], computed)
    return 'master %d, from %s' % (master['pid'], shared.source_of(master, 'timeout'))


def change_timeout(layer, master, seconds):
    """Where to raise the timeout to `seconds`: the place its value comes from."""
    return gunicorn_settings.where_to_change('timeout', shared.source_of(master, 'timeout'), str(seconds),
                                             str(seconds), runner=master['runner'] if master else None,
                                             env_file=layer.values.get('env_file'))


def _judge_preload_boot(layer, inputs, boot):
    """The spare-port boot's check, and its cause when the dry import found none; skipped when not needed or
    turned off by the user."""
    preload = boot.get('preload_boot')
    ran_as = '; ran as %s' % preload['run_as'] if preload and preload.get('run_as') else ''
    if preload is None and boot.get('preload_off'):
        layer.check('preload boot', 'skip', 'turned off (doctor_preload_boot=never): the app was not booted')
    elif preload is None:
        layer.check('preload boot', 'skip', 'not needed: %s' % boot.get('preload_skipped'))
    elif preload['listening'] and preload['healthz_status'] is not None:
        # It boots and serves; a non-200 health answer is the healthz layer's cause, not a boot fault.
        layer.check('preload boot', 'pass', 'gunicorn --preload on spare port %d: listening after %s s, %s -> %s; '
                    'the app boots, so look at the port/runner layers%s' % (
                        preload['port'], preload['listen_seconds'], inputs['healthz_path'], preload['healthz_status'],
                        ran_as))
    else:
        tail = preload['events']['tracebacks'][-1:] if preload['events']['tracebacks'] else []
        why = ('did not reach "Listening at" within %s s' % preload['seconds']) if preload['timed_out'] else \
            ('exited with code %s' % preload['exit_code']) if preload['exited'] else \
            ('started a dev server' if preload['dev_server'] else 'answered %s' % preload['healthz_status'])
        layer.check('preload boot', 'fail', 'gunicorn --preload on spare port %d %s%s' % (preload['port'], why, ran_as))
        if not layer.causes:
            # The dry import found nothing, yet gunicorn cannot boot the app: show gunicorn's words.
            evidence = ['%s: %s' % (preload['command'], why)]
            evidence += [t['exception'] for t in tail if t['exception']]
            evidence += [l for l in preload['output_tail'] if 'Error' in l or 'error' in l][-3:]
            layer.cause('slow_boot' if preload['timed_out'] else 'boot_exception', evidence,
                        extra='%d s' % int(preload['seconds']))


def _crash_loop(facts):
    """A master that cannot boot, started again and again: the pattern and who restarts it (evidence lines)."""
    gens = [g for g in (facts.get('log') or {}).get('generations') or [] if g['end'] == 'failed']
    found = history.pattern(gens) if len(gens) >= 2 else None
    if not found:
        return []
    runner = ((facts['process'].get('restarters') or {}).get('runners') or [None])[0]
    return ['crash loop: %d masters could not boot the app, %s; restarted by %s' % (
        len(gens), found['text'], process.describe_runner(runner) if runner else 'a runner that was not found')]


def _missing_env_in_tracebacks(tracebacks):
    for tb in reversed(tracebacks):
        exc = tb.get('exception') or ''
        m = re.match(r"^KeyError: '([A-Z_][A-Z0-9_]*)'$", exc)
        if m and any('os.py' in f or '<frozen os>' in f or 'environ' in f for f in tb['frames']):
            return m.group(1)
    return None
