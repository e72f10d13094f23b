# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The process layer: the gunicorn masters, earlier runs, periodic SIGTERMs (facts['process'], the log)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import shared

SIGTERM_RECENT = 600        # seconds of log history that count for periodic SIGTERMs


def judge(facts, layer):
    masters = shared.masters_of(facts)
    if not masters:
        layer.check('gunicorn master', 'warn', 'no gunicorn master of %s runs' % facts['inputs']['app'])
    for m in masters:
        layer.check('gunicorn master %d' % m['pid'], 'pass', shared.describe_master(m))
        _judge_settings(m, layer)
    if len(masters) > 1:
        layer.check('one runner', 'fail', '%d masters of %s' % (len(masters), facts['inputs']['app']))
        primary = shared.primary_master(facts)
        others = [m for m in masters if m is not primary]
        layer.cause('multiple_runners', [shared.describe_master(m) for m in masters],
                    extra=', '.join('pid %d started by %s' % (m['pid'], m['runner']['kind']) for m in others))
    elif masters:
        layer.check('one runner', 'pass', 'one master, started by %s' % masters[0]['runner']['kind'])

    strays = facts['process']['strays']
    if strays:
        layer.check('no stray processes', 'warn', '%d earlier run(s) of the app' % len(strays))
        layer.cause('stray_processes', ['pid %d (%s, %s s old, cwd %s): %s' % (
            s['pid'], s['reason'], shared.age(s['age'] or 0), s['cwd'], s['cmdline'][:200]) for s in strays],
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
    master = shared.primary_master(facts)
    young = master is None or master['age'] < SIGTERM_RECENT
    if len(recent) >= 2 and young:
        times = [e['epoch'] for e in recent]
        gaps = [b - a for a, b in zip(times, times[1:])]
        every = ' (every ~%.0f s)' % (sum(gaps) / len(gaps)) if gaps else ''
        evidence = ['%d x "Handling signal: term" in the last %d min of %s%s' % (
            len(recent), SIGTERM_RECENT // 60, log['path'], every)]
        evidence += [e['line'] for e in recent[-3:]]
        evidence.append(('the current master %d is %s s old, started by %s: %s' % (
            master['pid'], shared.age(master['age']), master['runner']['kind'], master['runner']['detail']))
            if master else 'no master runs right now')
        who = '%s (%s)' % (master['runner']['kind'], master['runner']['detail'][:120]) if master else 'the runner'
        layer.check('no periodic SIGTERM', 'fail', evidence[0])
        layer.cause('periodic_sigterm', evidence, extra=who)
    else:
        layer.check('no periodic SIGTERM', 'pass', '%d "Handling signal: term" in the recent log' % len(recent))

    restarts = [e for e in shared.last_run_events(facts) if e['event'] == 'worker_boot']
    workers = shared.setting(master, 'workers', 1)
    if master and len(restarts) > workers:
        layer.check('worker restarts', 'pass', 'note: %d workers booted since master %d started (%d configured)'
                    % (len(restarts), master['pid'], workers))


def _judge_settings(master, layer):
    """The master's effective settings with their sources, what they were read from, and what could not be read
    (a config file that does not parse is a warning: gunicorn would refuse it at the next start)."""
    detail = 'note: %s; read from %s' % (shared.describe_sources(master), '; '.join(master.get('settings_from') or []))
    problems = master.get('settings_problems') or []
    if problems:
        layer.check('gunicorn settings of master %d' % master['pid'], 'warn', '; '.join(problems) + '; ' + detail[6:])
    else:
        layer.check('gunicorn settings of master %d' % master['pid'], 'pass', detail)
