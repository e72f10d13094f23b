# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The process layer: the gunicorn masters, earlier runs, periodic SIGTERMs (facts['process'], the log)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import restart_history as history
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import shared, window

SIGTERM_RECENT = 600        # seconds of log history that count for periodic SIGTERMs
MANAGERS = ('systemd', 'supervisord', 'platform')   # runners that restart what they run


def judge(facts, layer):
    masters = shared.masters_of(facts)
    if not masters:
        layer.check('gunicorn master', 'warn', 'no gunicorn master of %s runs' % facts['inputs']['app'])
    for m in masters:
        layer.check('gunicorn master %d' % m['pid'], 'pass', shared.describe_master(m))
        _judge_settings(m, layer)
    master = shared.primary_master(facts)
    restarts = _restarts(facts, master)
    overlap = _one_runner_overlap(masters, restarts)
    blocked = _blocked_starts(facts, masters)
    if len(masters) == 1 and blocked:
        _second_runner_blocked(facts, layer, masters[0], blocked)
    elif overlap:
        layer.check('one runner', 'pass', 'note: ' + overlap)
    elif len(masters) > 1:
        layer.check('one runner', 'fail', '%d masters of %s' % (len(masters), facts['inputs']['app']))
        # Stop the masters no service manager runs (one left behind holds $PORT against the managed one), else all
        # but the primary.
        managed = [m for m in masters if m['runner']['kind'] in MANAGERS]
        others = [m for m in masters if m not in managed] if managed else \
            [m for m in masters if m is not master]
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

    _judge_window(facts, layer)
    _periodic_sigterm(facts, layer, master, restarts, overlap)

    _log_worker_restarts(facts, layer, master)


def _log_worker_restarts(facts, layer, master):
    """Worker re-boots the log shows in the current run, when the window saw none (it may end at once on what the
    log already shows): a warning when workers were killed (WORKER TIMEOUT, SIGKILL), else a note."""
    events = shared.last_run_events(facts)
    restarts = [e for e in events if e['event'] == 'worker_boot']
    killed = [e for e in events if e['event'] in ('worker_timeout', 'worker_sigkill')]
    workers = shared.setting(master, 'workers', 1)
    if not master or len(restarts) <= workers or window.worker_restarts(facts):
        return
    detail = '%d workers booted since master %d started (%d configured)' % (len(restarts), master['pid'], workers)
    if killed:
        layer.check('worker restarts', 'warn', '%s; the log: %s' % (detail, killed[-1]['line'].split('] ', 3)[-1]))
    else:
        layer.check('worker restarts', 'pass', 'note: ' + detail)


def _blocked_starts(facts, masters):
    """The masters the log shows starting since the one running master did, each giving up because it could not bind
    (two or more): something else keeps starting the app while that master holds the address."""
    log = facts.get('log')
    if not log or len(masters) != 1 or not masters[0].get('create_time'):
        return []
    since = masters[0]['create_time'] - 1   # the log's times have whole seconds
    blocked = [g for g in log.get('generations') or [] if g['end'] == 'bind_failed' and g['pid'] != masters[0]['pid']
               and g['started'] is not None and g['started'] >= since]
    return blocked if len(blocked) >= 2 else []   # one collision (a deploy script's try) is no runner that keeps at it


def _second_runner_blocked(facts, layer, master, blocked):
    """Two runners, one of them seen only in the log: its masters keep failing to bind the address `master` holds.
    The one to stop is the master no service manager runs (one left behind holds $PORT against the managed one)."""
    layer.check('one runner', 'fail', '%d masters of %s could not bind while master %d held the address' % (
        len(blocked), facts['inputs']['app'], master['pid']))
    found = history.pattern(blocked)
    evidence = [shared.describe_master(master),
                '%d masters started since master %d, each giving up because it could not bind%s: another runner keeps '
                'starting the app' % (len(blocked), master['pid'], ' (%s)' % found['text'] if found else '')] + \
        [history.describe(g) for g in blocked[-3:]]
    managed = master['runner']['kind'] in MANAGERS
    extra = ('the runner of the masters that could not bind (see restart_history), not master %d started by %s' % (
        master['pid'], master['runner']['kind'])) if managed else 'pid %d started by %s' % (master['pid'], master['runner']['kind'])
    layer.cause('multiple_runners', evidence, extra=extra)


def _runner_key(runner):
    """What tells one runner from another: its kind and PID, and the program or unit it runs the master as (one
    supervisord runs many programs, systemd many units); None when it has no PID of its own (detached, nohup)."""
    if not runner or not runner.get('pid'):
        return None
    return runner['kind'], runner['pid'], runner.get('program'), runner['detail'] if runner['kind'] == 'systemd' else None


def _one_runner_overlap(masters, restarts):
    """Two or more masters, all started by one runner that restarts them from outside (`restarts`, periodic_sigterm
    holds): the overlap of one restart - it starts the next master beside the old one, then stops the old - not a
    second runner -> a text, or None."""
    keys = set(_runner_key(m['runner']) for m in masters)
    if len(masters) < 2 or len(keys) != 1 or None in keys or not restarts['holds']:
        return None
    runner = masters[0]['runner']
    return ('%d masters, all started by %s pid %d, which restarts them: the overlap of one restart (it starts the next '
            'master before it stops the old one), not a second runner (see periodic_sigterm)' % (
                len(masters), runner['kind'], runner['pid']))


def _judge_settings(master, layer):
    """The master's effective settings with their sources, what they were read from, and what could not be read
    (a config file that does not parse is a warning: gunicorn would refuse it at the next start)."""
    detail = 'note: %s; read from %s' % (shared.describe_sources(master), '; '.join(master.get('settings_from') or []))
    problems = master.get('settings_problems') or []
    if problems:
        layer.check('gunicorn settings of master %d' % master['pid'], 'warn', '; '.join(problems) + '; ' + detail[6:])
    else:
        layer.check('gunicorn settings of master %d' % master['pid'], 'pass', detail)


def _judge_window(facts, layer):
    """What the stability window saw the masters and workers do, whatever /healthz answered meanwhile."""
    watched = window.seconds(facts)
    if watched is None:
        return
    primary = shared.primary_master(facts)
    exits = window.master_exits(facts, primary['pid'] if primary else None)
    changed = [window.describe_exit(m) for m in exits] + window.second_masters(facts, exits)
    if changed:   # a master restarted or a second one is this layer's fault; one that only went (or gave up) is not
        layer.check('masters through the window', 'fail' if window.from_outside(facts, exits) else 'warn',
                    '; '.join(changed) + window.ended_early(facts))
    else:
        layer.check('masters through the window', 'pass', 'no master exited or started during the %.1f s window'
                    % watched)
    restarts = window.worker_restarts(facts)
    if restarts:
        layer.check('worker restarts', 'warn', '; '.join(restarts) + window.ended_early(facts))


def _log_restarts(log):
    """-> (recent "Handling signal: term" events, the masters that served and were stopped from outside, the
    generations, the newest epoch), within the last SIGTERM_RECENT s of the log (restart_history.stopped_from_outside)."""
    if not log:
        return [], [], [], 0
    gens = log.get('generations') or []
    recent, ended, newest = history.stopped_from_outside(log['events'], gens, SIGTERM_RECENT)
    return recent, ended, gens, newest


def _restarts(facts, master):
    """What says a runner restarts the masters from outside: a master replaced during the stability window, or two or
    more SIGTERMs / masters that served and ended in the last SIGTERM_RECENT s of the log while the current master is
    younger than that -> {replaced (texts), recent, ended, gens, newest (_log_restarts), holds}."""
    replaced = ['%s during the stability window: a runner restarts it' % window.describe_exit(m)
                for m in window.master_exits(facts, master['pid'] if master else None) if m['by'] and not m['failed']]
    recent, ended, gens, newest = _log_restarts(facts.get('log'))
    young = master is None or master['age'] < SIGTERM_RECENT
    return {'replaced': replaced, 'recent': recent, 'ended': ended, 'gens': gens, 'newest': newest,
            'holds': bool(replaced) or (young and history.restarted_from_outside(recent, ended))}


def _periodic_sigterm(facts, layer, master, restarts, overlap=None):
    """periodic_sigterm when `restarts` (_restarts) holds: a runner restarts the master. The evidence is what the
    window saw, the pattern, a short timeline and who restarts it (and the `overlap` of its restart, two masters at
    once); the remedy names that runner and its setting."""
    log = facts.get('log')
    replaced, recent, ended, gens, newest = [restarts[k] for k in ('replaced', 'recent', 'ended', 'gens', 'newest')]
    if not restarts['holds']:
        if log:
            layer.check('no periodic SIGTERM', 'pass', '%d "Handling signal: term" in the recent log' % len(recent))
        else:
            layer.check('no periodic SIGTERM', 'skip', 'no log to read: set doctor_log_file to see the restart history')
        return
    found = history.pattern(gens, newest=newest, within=SIGTERM_RECENT) if gens else None
    how = found['text'] if found else '%d masters ended' % len(ended)
    evidence = list(replaced)
    if len(recent) >= 2:
        evidence.append('%d x "Handling signal: term" in the last %d min of %s: %s' % (
            len(recent), SIGTERM_RECENT // 60, log['path'], how))
    elif len(ended) >= 2:
        evidence.append('%d masters of the last %d min of %s ended: %s' % (
            len(ended), SIGTERM_RECENT // 60, log['path'], how))
    restarters = (facts['process'].get('restarters') or {})
    runner = (restarters.get('runners') or [None])[0]
    evidence += ['timeline: %s' % line for line in history.timeline(gens, 5)]
    evidence.append('restarted by: %s' % describe_runner(runner) if runner else
                    'no runner that restarts it was found (no shell loop, supervisord program, systemd unit or cron)')
    evidence += ['health check on another port: pid %d asks port %s: %s' % (
        c['pid'], ','.join(str(p) for p in c['ports']), c['command'][:120]) for c in restarters.get('health_checkers') or []]
    evidence.append(('the current master %d is %s s old, started by %s: %s' % (
        master['pid'], shared.age(master['age']), master['runner']['kind'], master['runner']['detail']))
        if master else 'no master runs right now')
    if overlap:
        evidence.append(overlap)
    layer.check('no periodic SIGTERM', 'fail', evidence[0])
    layer.cause('periodic_sigterm', evidence, extra=runner_fix(runner, found, master, restarters, facts['port']['port']))


def describe_runner(runner):
    """'bash loop pid 4100: while true; ...' / 'supervisord program web (/etc/...): autorestart=true, startsecs=1'."""
    settings = ', '.join('%s=%s' % kv for kv in sorted(runner['settings'].items()))
    names = {'shell_loop': '%s loop pid %s' % (runner['name'], runner['pid']),
             'supervisord': 'supervisord program %s' % runner['name'],
             'systemd': 'systemd unit %s' % runner['name'],
             'cron': 'cron' + (' pid %s' % runner['pid'] if runner['pid'] else ''),
             'platform': 'platform runner %s pid %s' % (runner['name'], runner['pid'])}
    text = names.get(runner['kind'], runner['kind'])
    if runner['source']:
        text += ' (%s)' % runner['source']
    if settings:
        text += ': %s' % settings
    if runner['command'] and runner['kind'] in ('shell_loop', 'cron', 'platform'):
        text += ': %s' % runner['command'][:160]
    return text + ', found by %s' % runner['found'] if runner['found'] else text


def runner_fix(runner, found, master, restarters, port):
    """The remedy's first part: who restarts the master and which setting to change."""
    every = ' every %d s' % round(found['period']) if found and found['regular'] else ''
    if runner is None:
        who = '%s (%s)' % (master['runner']['kind'], master['runner']['detail'][:120]) if master else 'the runner'
        text = 'find who sends TERM (%s)' % who
    elif runner['kind'] == 'shell_loop':
        text = '%s loop pid %s (%s) restarts it%s: stop it (kill %s) and remove what starts it' % (
            runner['name'], runner['pid'], (runner['command'] or '')[:100], every, runner['pid'])
    elif runner['kind'] == 'systemd':
        text = _systemd_fix(runner, every)
    elif runner['kind'] == 'supervisord':
        s = runner['settings']
        text = ('supervisord program %s (%s): autorestart=%s, startsecs=%s - supervisord starts the master again each '
                'time it exits%s; remove what stops it (the timeline), and set startsecs= above its boot time so a '
                'master that keeps dying ends FATAL instead of looping' % (
                    runner['name'], runner['source'], s.get('autorestart', 'not read'), s.get('startsecs', 'not read'),
                    ' (%s)' % every.strip() if every else ''))
    elif runner['kind'] == 'platform':
        text = '%s (pid %s: %s) restarts it%s: fix its health check or restart policy' % (
            runner['name'], runner['pid'], (runner['command'] or '')[:100], every)
    else:
        text = 'cron starts it (%s): remove the crontab line%s' % (
            runner['command'] or 'pid %s' % runner['pid'], ' in %s' % runner['source'] if runner['source'] else '')
    for checker in restarters.get('health_checkers') or []:
        text += '; pid %d (%s) checks port %s, not $PORT=%s: point it at %s' % (
            checker['pid'], checker['command'][:80], ','.join(str(p) for p in checker['ports']), port, port)
    return text


def _systemd_fix(runner, every):
    s, name = runner['settings'], runner['name']
    where = 'systemd unit %s (%s)' % (name, runner['source'] or 'unit file not found')
    if s.get('WatchdogSec') and s['WatchdogSec'] not in ('0', 'infinity'):
        every_watchdog = s['WatchdogSec'] + (' s' if s['WatchdogSec'].isdigit() else '')
        text = ('%s: WatchdogSec=%s, Restart=%s - gunicorn never sends WATCHDOG=1, so systemd kills the master every %s '
                'and restarts it: remove WatchdogSec=' % (where, s['WatchdogSec'], s.get('Restart', 'no'), every_watchdog))
    elif s.get('RuntimeMaxSec') and s['RuntimeMaxSec'] != 'infinity':
        text = '%s: RuntimeMaxSec=%s stops the master after that long and Restart=%s starts it again: remove ' \
               'RuntimeMaxSec=' % (where, s['RuntimeMaxSec'], s.get('Restart', 'no'))
    else:
        text = '%s: Restart=%s starts the master again each time it exits%s; remove what stops it (the timeline)' % (
            where, s.get('Restart', 'no'), ' (%s)' % every.strip() if every else '')
    return text + ', then systemctl daemon-reload && systemctl restart %s' % name


def restart_history(facts):
    """The report's restart_history: the masters' pattern, a short timeline and who restarts them; None without a
    log (or a log with no master in it)."""
    gens = (facts.get('log') or {}).get('generations') or []
    if not gens:
        return None
    restarters = facts['process'].get('restarters') or {}
    found = history.pattern(gens)
    runner = (restarters.get('runners') or [None])[0]
    return {
        'pattern': found['text'] if found else None,
        'restarts': found['restarts'] if found else 0,
        'period': found['period'] if found else None,
        'jitter': found['jitter'] if found else None,
        'timeline': history.timeline(gens),
        'runner': dict(runner, text=describe_runner(runner)) if runner else None,
        'health_checkers': restarters.get('health_checkers') or [],
    }
