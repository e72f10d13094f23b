# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts -> layer statuses, causes and the verdict. The only place that decides what a fact means.

Pure: no I/O, no Ansible. `judge(facts, host)` returns the contract's report; `judge_layer` serves
the single-layer modules.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import shlex

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import (
    eventlet as judge_eventlet, external as judge_external, voice as judge_voice)
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain.causes import CAUSES, LAYERS, render_remedy
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.listen import is_loopback

RANK = {'skip': 0, 'pass': 1, 'warn': 2, 'fail': 3}
SIGTERM_RECENT = 600        # seconds of log history that count for periodic SIGTERMs
FD_MINIMUM = 1024
DISK_FAIL_PCT, DISK_WARN_PCT = 99.0, 95.0
DISK_FAIL_FREE = 16 << 20   # under 16 MiB free a log write fails soon
MEM_FAIL_PCT, MEM_WARN_PCT = 3.0, 10.0


class Layer(object):
    """Checks and causes of one layer as they are found."""

    def __init__(self, name, values):
        self.name = name
        self.values = values
        self.checks = []
        self.causes = []

    def check(self, name, status, detail):
        self.checks.append({'name': name, 'status': status, 'detail': detail})

    def cause(self, cause_id, evidence, severity=None, refs=None, **extra):
        """Record a cause; `refs` overrides the table's twilio_error / runbook_cause / runbook_step
        when this instance's evidence says more than the usual case."""
        meta = CAUSES[cause_id]
        values = dict(self.values, **extra)
        self.causes.append({
            'id': cause_id,
            'layer': meta['layer'],
            'severity': severity or meta['severity'],
            'evidence': [e for e in evidence if e] or [meta['meaning']],
            'remedy': render_remedy(cause_id, values),
            'twilio_error': meta['twilio_error'],
            'runbook_step': meta['runbook_step'],
            'runbook_cause': meta['runbook_cause'],
        })
        self.causes[-1].update(refs or {})

    def result(self):
        # A passing note ("note: none known ...") is context: a layer whose real checks were all skipped is skipped.
        real = [c for c in self.checks if not (c['status'] == 'pass' and (c['detail'] or '').startswith('note:'))]
        statuses = [c['status'] for c in (real or self.checks)] + [c['severity'] for c in self.causes]
        status = max(statuses, key=RANK.get) if statuses else 'skip'
        return {'name': self.name, 'status': status, 'checks': self.checks}


# --- helpers on facts ------------------------------------------------------------------------------
def _masters(facts):
    return facts['process']['masters']


def _primary_master(facts):
    """The master serving $PORT if one does, else the oldest."""
    on_port = set(s['pid'] for s in (facts.get('listen') or {}).get('on_port', []))
    masters = _masters(facts)
    for m in masters:
        if m['pid'] in on_port:
            return m
    return max(masters, key=lambda m: m['age']) if masters else None


def _last_run_events(facts):
    """Log events of the current run: after the primary master's `Listening at`, else after the last
    `Starting gunicorn` (so old incidents in a long log do not count against a healthy service)."""
    log = facts.get('log')
    if not log:
        return []
    events = log['events']
    master = _primary_master(facts)
    start = 0
    for i, e in enumerate(events):
        if e['event'] == 'listening' and master and int(e.get('master', 0)) == master['pid']:
            start = i
            break
        if e['event'] == 'starting':
            start = i
    return events[start:]


def _describe_master(m):
    s = m['settings']
    return 'master %d (%s, %s worker%s, timeout %s, bind %s%s), %s s old, started by %s: %s' % (
        m['pid'], s['worker_class'], s['workers'], '' if s['workers'] == 1 else 's', s['timeout'],
        ','.join(s['bind']), ', preload' if s['preload'] else '', _age(m['age']), m['runner']['kind'],
        m['runner']['detail'])


def _age(seconds):
    return '%d' % seconds if seconds >= 10 else '%.1f' % seconds


def _values(facts):
    """Host values for the remedy templates."""
    inputs = facts['inputs']
    port = facts['port']['port']
    master = _primary_master(facts)
    settings = master['settings'] if master else {}
    command = gunicorn.format_command(
        shlex.quote(inputs['python']) if ' ' in inputs['python'] else inputs['python'], inputs['app'], '$PORT',
        worker_class=settings.get('worker_class', 'sync'), workers=settings.get('workers', 1))
    env_where = inputs.get('env_file') or 'the service environment (unit Environment=, supervisord environment=)'
    return {
        'port': port,
        'source': facts['port']['source'],
        'raw': facts['port'].get('raw') or '',
        'env_where': env_where,
        'command': 'cd %s && PORT=%d %s' % (inputs['chdir'], port, command),
        'healthz_path': inputs['healthz_path'],
        'dry_import_command': 'cd %s && %s -c "import %s as m; a = m.%s; print(a.url_map); '
                              'print(a.test_client().get(\'%s\').status_code)"' % (
                                  inputs['chdir'], inputs['python'], gunicorn.split_app_spec(inputs['app'])[0],
                                  gunicorn.split_app_spec(inputs['app'])[1].rstrip('()'), inputs['healthz_path']),
    }


# --- the layers, in ladder order ---------------------------------------------------------------------
def judge_port(facts, layer):
    port = facts['port']
    if port['source'] == 'default':
        layer.check('port resolved', 'warn', 'PORT is set nowhere (doctor_port, the master environment, env file, '
                    'systemd unit, supervisord program): using %d' % port['port'])
        layer.cause('port_unset', ['PORT is set in none of: doctor_port, a running master\'s environment, %s, '
                                   'systemd units, supervisord programs' % (facts['inputs']['env_file'] or 'no env file'),
                                   'every check below uses the runbook default %d' % port['port']])
    elif not port['valid']:
        layer.check('port resolved', 'fail', 'PORT=%r from %s is not a port number' % (port['raw'], port['source']))
        evidence = ['PORT=%r in %s' % (port['raw'], port['source'])]
        evidence += [e['line'] for e in _last_run_events(facts) if e['event'] == 'invalid_port'][-2:]
        evidence += ['every check below uses the runbook default %d' % port['port']]
        layer.cause('port_invalid', evidence)
    else:
        layer.check('port resolved', 'pass', '%d from %s' % (port['port'], port['source']))
    if port.get('disagree'):
        layer.check('port sources agree', 'pass', 'note: the sources disagree, the first wins: ' + '; '.join(
            '%s=%s' % (c['source'], c['value']) for c in port['candidates']))


def judge_process(facts, layer):
    masters = _masters(facts)
    if not masters:
        layer.check('gunicorn master', 'warn', 'no gunicorn master of %s runs' % facts['inputs']['app'])
    for m in masters:
        layer.check('gunicorn master %d' % m['pid'], 'pass', _describe_master(m))
    if len(masters) > 1:
        layer.check('one runner', 'fail', '%d masters of %s' % (len(masters), facts['inputs']['app']))
        primary = _primary_master(facts)
        others = [m for m in masters if m is not primary]
        layer.cause('multiple_runners', [_describe_master(m) for m in masters],
                    extra=', '.join('pid %d started by %s' % (m['pid'], m['runner']['kind']) for m in others))
    elif masters:
        layer.check('one runner', 'pass', 'one master, started by %s' % masters[0]['runner']['kind'])

    strays = facts['process']['strays']
    if strays:
        layer.check('no stray processes', 'warn', '%d earlier run(s) of the app' % len(strays))
        layer.cause('stray_processes', ['pid %d (%s, %s s old, cwd %s): %s' % (
            s['pid'], s['reason'], _age(s['age'] or 0), s['cwd'], s['cmdline'][:200]) for s in strays],
            extra=', '.join('pid %d' % s['pid'] for s in strays))
    else:
        layer.check('no stray processes', 'pass', 'no dev server or python run of the app besides gunicorn')

    log = facts.get('log')
    if not log:
        layer.check('no periodic SIGTERM', 'skip', 'no log to read: set doctor_log_file to see the restart history')
        return
    terms = [e for e in log['events'] if e['event'] == 'signal_term']
    newest = max([e['epoch'] for e in log['events'] if e.get('epoch')] or [0])
    recent = [e for e in terms if e.get('epoch') and newest - e['epoch'] <= SIGTERM_RECENT]
    master = _primary_master(facts)
    young = master is None or master['age'] < SIGTERM_RECENT
    if len(recent) >= 2 and young:
        times = [e['epoch'] for e in recent]
        gaps = [b - a for a, b in zip(times, times[1:])]
        every = ' (every ~%.0f s)' % (sum(gaps) / len(gaps)) if gaps else ''
        evidence = ['%d x "Handling signal: term" in the last %d min of %s%s' % (
            len(recent), SIGTERM_RECENT // 60, log['path'], every)]
        evidence += [e['line'] for e in recent[-3:]]
        evidence.append(('the current master %d is %s s old, started by %s: %s' % (
            master['pid'], _age(master['age']), master['runner']['kind'], master['runner']['detail']))
            if master else 'no master runs right now')
        who = '%s (%s)' % (master['runner']['kind'], master['runner']['detail'][:120]) if master else 'the runner'
        layer.check('no periodic SIGTERM', 'fail', evidence[0])
        layer.cause('periodic_sigterm', evidence, extra=who)
    else:
        layer.check('no periodic SIGTERM', 'pass', '%d "Handling signal: term" in the recent log' % len(recent))

    restarts = [e for e in _last_run_events(facts) if e['event'] == 'worker_boot']
    if master and len(restarts) > master['settings']['workers']:
        layer.check('worker restarts', 'pass', 'note: %d workers booted since master %d started (%d configured)'
                    % (len(restarts), master['pid'], master['settings']['workers']))


def _prefer_masters(sockets):
    """Workers inherit the master's listening socket: name the master once, not each worker."""
    masters = set((s['address'], s['port']) for s in sockets if s['app_role'] == 'master')
    return [s for s in sockets if s['app_role'] == 'master' or (s['address'], s['port']) not in masters]


def judge_listen(facts, layer):
    port = facts['port']['port']
    listen = facts['listen']
    mine = _prefer_masters([s for s in listen['on_port'] if s['app_role']])
    others = [s for s in listen['on_port'] if not s['app_role']]
    elsewhere = _prefer_masters([s for s in listen['app_sockets'] if s['port'] != port])
    if mine:
        where = ', '.join('%s:%d by %s %s' % (s['address'], s['port'], s['app_role'], s['pid']) for s in mine)
        if all(is_loopback(s['address']) for s in mine):
            layer.check('listening on $PORT', 'fail', 'loopback only: ' + where)
            layer.cause('bind_loopback_only', ['only %s: the platform and proxies cannot reach it' % where],
                        bound='%s:%d' % (mine[0]['address'], port))
        else:
            layer.check('listening on $PORT', 'pass', where)
        return
    holders = ['port %d is held by pid %s (%s) on %s, not by the app' % (port, s['pid'], s['name'], s['address'])
               for s in others]
    app_elsewhere = [s for s in elsewhere if s['app_role'] == 'master'] or elsewhere
    if app_elsewhere:
        where = ', '.join('%s %s listens on %s:%d' % (s['app_role'], s['pid'], s['address'], s['port'])
                          for s in app_elsewhere)
        layer.check('listening on $PORT', 'fail', 'nothing of the app listens on %d; %s' % (port, where))
        s = app_elsewhere[0]
        layer.cause('wrong_port', ['nothing of the app listens on %d (PORT from %s); %s' % (
            port, facts['port']['source'], where)] + holders, bound='%s:%d' % (s['address'], s['port']))
        return
    evidence = ['nothing of the app listens on %d (PORT from %s)' % (port, facts['port']['source'])] + holders
    masters = _masters(facts)
    evidence += ['%s, but it listens nowhere' % _describe_master(m) for m in masters] or \
        ['no gunicorn master of %s runs' % facts['inputs']['app']]
    tail = [e['line'] for e in _last_run_events(facts)
            if e['event'] in ('worker_failed_boot', 'app_failed_load', 'master_shutdown', 'signal_term')][-3:]
    evidence += tail
    layer.check('listening on $PORT', 'fail', evidence[0])
    layer.cause('not_listening', evidence)


def _answered_by_stranger(facts):
    """Listeners on $PORT, when none of them is the app: their 200 is not the app's."""
    on_port = (facts.get('listen') or {}).get('on_port', [])
    return [] if any(s['app_role'] for s in on_port) else on_port


def healthz_stable(facts):
    samples = (facts.get('healthz') or {}).get('samples')
    return bool(samples) and all(s['status'] == 200 for s in samples) and not _answered_by_stranger(facts)


def _answers_in_runs(samples, most=4):
    """The samples' answers as runs, so a long window stays one short phrase: '26 x 200', or
    '3 x 200, then 2 x 502, then 1 x connection refused'."""
    runs = []
    for s in samples:
        answer = str(s['status']) if s['status'] else (s['error'] or 'no answer')
        if runs and runs[-1][0] == answer:
            runs[-1][1] += 1
        else:
            runs.append([answer, 1])
    text = ', then '.join('%d x %s' % (count, answer) for answer, count in runs[:most])
    if len(runs) > most:
        text += ', then %d more changes' % (len(runs) - most)
    return text or 'no samples'


def judge_healthz(facts, layer):
    h = facts['healthz']
    samples = h['samples']
    statuses = [s['status'] for s in samples]
    ok = [s for s in samples if s['status'] == 200]
    summary = '%s over %.1f s (%s)' % (_answers_in_runs(samples), h['elapsed'], h['wait_reason'])
    strangers = _answered_by_stranger(facts)
    if ok and strangers:
        layer.check('stable 200', 'fail', '%s, but from pid %s (%s), which is not the app' % (
            summary, strangers[0]['pid'], strangers[0]['name']))
        return
    if healthz_stable(facts):
        latency = max(s['latency_ms'] for s in samples)
        layer.check('stable 200', 'pass', '%s; slowest %.0f ms; body %r' % (summary, latency, samples[0]['body'][:80]))
        return
    layer.check('stable 200', 'fail', '%s at %s' % (summary, h['url']))
    if ok and len(ok) < len(samples):
        bad = next(s for s in samples if s['status'] != 200)
        layer.cause('healthz_flapping', ['%s answered 200, then %s after %.1f s' % (
            h['url'], bad['status'] or bad['error'], bad['at'])] + [summary])
    elif 404 in statuses:
        layer.cause('healthz_missing', ['GET %s -> 404 body %r' % (h['url'], samples[statuses.index(404)]['body'][:120])])
    elif any(s and s >= 500 for s in statuses):
        first = next(s for s in samples if s['status'] and s['status'] >= 500)
        evidence = ['GET %s -> %d body %r' % (h['url'], first['status'], first['body'][:120])]
        tb = (facts.get('log') or {}).get('tracebacks') or []
        if tb:
            evidence.append('last traceback in the log: %s' % tb[-1]['exception'])
        layer.cause('healthz_error', evidence)


def judge_boot(facts, layer):
    inputs = facts['inputs']
    boot = facts['boot']
    dry = boot['dry_import'] or {}
    master = _primary_master(facts)
    timeout = master['settings']['timeout'] if master else gunicorn.DEFAULTS['timeout']
    events = _last_run_events(facts)

    _judge_dry_import(layer, inputs, boot, master, timeout)

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

    # The log of the current run.
    failed = [e['line'] for e in events if e['event'] in ('worker_failed_boot', 'app_failed_load', 'worker_exception')]
    if failed and not any(c['id'] in ('boot_exception', 'missing_env') for c in layer.causes):
        tb = (facts['log'] or {}).get('tracebacks') or []
        evidence = failed[-2:] + ['last traceback: %s' % t['exception'] for t in tb[-1:] if t['exception']]
        env_name = _missing_env_in_tracebacks(tb)
        if env_name:
            layer.cause('missing_env', evidence, extra=env_name)
        else:
            layer.cause('boot_exception', evidence)
    timeouts = [e for e in events if e['event'] == 'worker_timeout']
    if timeouts:
        evidence = ['%d x WORKER TIMEOUT since the master started (timeout %d s)' % (len(timeouts), timeout)]
        evidence += [e['line'] for e in timeouts[-3:]]
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
        if seconds >= timeout:
            layer.check('dry import', 'fail', detail)
            layer.cause('slow_boot', ['importing %s takes %.1f s, the worker timeout is %d s (%s)' % (
                inputs['app'], seconds, timeout, 'master %d' % master['pid'] if master else 'gunicorn default')],
                extra='%d s' % (int(seconds) + 10))
        elif seconds >= timeout / 2.0:
            layer.check('dry import', 'warn', detail)
            layer.cause('slow_boot', ['importing %s takes %.1f s, half of the worker timeout %d s or more' % (
                inputs['app'], seconds, timeout)], severity='warn', extra='%d s' % (int(seconds) + 10))
        else:
            layer.check('dry import', 'pass', detail)


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


def _missing_env_in_tracebacks(tracebacks):
    for tb in reversed(tracebacks):
        exc = tb.get('exception') or ''
        m = re.match(r"^KeyError: '([A-Z_][A-Z0-9_]*)'$", exc)
        if m and any('os.py' in f or '<frozen os>' in f or 'environ' in f for f in tb['frames']):
            return m.group(1)
    return None


def judge_system(facts, layer):
    system = facts['system']
    for disk in system['disks']:
        detail = '%s (mount %s): %.1f%% used, %d MiB free, inodes %.1f%% used' % (
            disk['path'], disk['mount'], disk['used_pct'], disk['free_bytes'] >> 20, disk['inodes_used_pct'])
        full = disk['used_pct'] >= DISK_FAIL_PCT or disk['free_bytes'] < DISK_FAIL_FREE or disk['inodes_used_pct'] >= 99.5
        if full or disk['used_pct'] >= DISK_WARN_PCT:
            layer.check('disk %s' % disk['mount'], 'fail' if full else 'warn', detail)
            layer.cause('disk_full', [detail], severity='fail' if full else 'warn', extra=disk['mount'])
        else:
            layer.check('disk %s' % disk['mount'], 'pass', detail)
    for limit in system['nofile_masters']:
        detail = 'master %d: Max open files %s (soft) / %s (hard) in /proc/%d/limits' % (
            limit['pid'], limit['soft'], limit['hard'], limit['pid'])
        if limit['soft'] is not None and limit['soft'] < FD_MINIMUM:
            layer.check('open files (master %d)' % limit['pid'], 'fail', detail)
            layer.cause('fd_limit_low', [detail], extra='%s' % limit['soft'])
        else:
            layer.check('open files (master %d)' % limit['pid'], 'pass', detail)
    shell = system['nofile_shell']
    if shell['soft'] is not None and shell['soft'] < FD_MINIMUM:
        layer.check('open files (fresh shell)', 'warn', 'ulimit -n is %s' % shell['soft'])
        if not any(c['id'] == 'fd_limit_low' for c in layer.causes):
            layer.cause('fd_limit_low', ['ulimit -n is %s in a fresh shell: a restarted service inherits it'
                                         % shell['soft']], severity='warn', extra='%s' % shell['soft'])
    else:
        layer.check('open files (fresh shell)', 'pass', 'ulimit -n is %s' % (shell['soft'] or 'unlimited'))
    mem = system['memory']
    if mem['available_pct'] is None:
        layer.check('memory', 'skip', 'memory size unknown on this host')
        mem = None
    top = ', '.join('%s %d (%d MiB)' % (p['name'], p['pid'], p['rss_bytes'] >> 20) for p in system['top_memory'][:3])
    detail = mem and '%.1f%% of %d MiB available; largest: %s' % (mem['available_pct'], mem['total_bytes'] >> 20, top)
    if mem is None:
        pass
    elif mem['available_pct'] < MEM_WARN_PCT:
        severity = 'fail' if mem['available_pct'] < MEM_FAIL_PCT else 'warn'
        layer.check('memory', severity, detail)
        layer.cause('memory_pressure', [detail], severity=severity, extra=top)
    else:
        layer.check('memory', 'pass', detail)
    app_oom = [e for e in (system.get('oom_kernel') or []) if re.search(r'gunicorn|python', e['name'] or '')]
    sigkills = [e for e in _last_run_events(facts) if e['event'] == 'worker_sigkill']
    timed_out = set(e.get('worker') for e in _last_run_events(facts) if e['event'] == 'worker_timeout')
    unexplained = [e for e in sigkills if e.get('worker') not in timed_out]
    if app_oom or unexplained:
        evidence = [e['line'] for e in app_oom[-3:]] + [e['line'] for e in unexplained[-3:]]
        layer.check('no OOM kills', 'fail', evidence[0])
        layer.cause('oom_killed', evidence, severity='fail' if app_oom else 'warn', extra='dmesg / the gunicorn log')
    else:
        layer.check('no OOM kills', 'pass', 'kernel oom_kill counter %s; none of the app in the kernel log%s' % (
            system.get('oom_kill_count'), '' if system.get('oom_kernel') is not None else ' (dmesg not readable)'))


JUDGES = (
    ('port', judge_port), ('process', judge_process), ('listen', judge_listen), ('healthz', judge_healthz),
    ('boot', judge_boot), ('system', judge_system), ('eventlet', judge_eventlet.judge),
    ('voice', judge_voice.judge), ('external', judge_external.judge),
)


def _judge_one(facts, name, func, layer):
    late = (facts.get('ran_out_of_time') or {}).get(name)
    if late:   # the probe's deadline passed before this layer's facts were in: say so, judge nothing half-seen
        layer.check('probe finished', 'warn', late)
    elif name in facts or name in ('eventlet', 'voice', 'external'):  # later layers say why they skip
        func(facts, layer)


def judge_layer(facts, name):
    """One layer's result and causes (for the single-layer modules)."""
    layer = Layer(name, _values(facts))
    _judge_one(facts, name, dict(JUDGES)[name], layer)
    return layer.result(), layer.causes


def judge(facts, host):
    """The whole report of one host (see the contract and report.schema.json)."""
    values = _values(facts)
    layers, causes = [], []
    for name, func in JUDGES:
        layer = Layer(name, values)
        _judge_one(facts, name, func, layer)
        layers.append(layer.result())
        causes.extend(layer.causes)
    causes.sort(key=lambda c: (LAYERS.index(c['layer']), -RANK[c['severity']]))
    failed = next((l['name'] for l in layers if l['status'] == 'fail'), None)
    if not healthz_stable(facts):
        verdict = 'down'
    elif causes:
        verdict = 'degraded'
    else:
        verdict = 'healthy'
    return {
        'host': host,
        'verdict': verdict,
        'failed_layer': failed,
        'causes': causes,
        'layers': layers,
        'port': facts['port']['port'],
        'port_source': facts['port']['source'],
        'timings': facts.get('timings', {}),
    }
