# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restart history of a gunicorn log: one record per master (a "generation"), its pattern, a short timeline.

Pure: log events in (gunicorn.scan_log, each with its `epoch`), data and text out. What gunicorn logs for a master
(docs/facts.md): `Starting gunicorn`, `Listening at: URL (PID)`, `Using worker: CLASS`, `Handling signal: term`,
`Shutting down: Master` and `Reason: Worker failed to boot.` / `Reason: App failed to load.`, all under the master's
PID; `Booting worker with pid: N` under the worker's PID; `WORKER TIMEOUT (pid:N)` under the master's. Under
`--reuse-port` each worker binds its own socket and the master logs `Listening at:  (PID)` with no address.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

GENERATIONS_KEPT = 30      # the recent masters; a long-lived log keeps thousands
TIMELINE_LINES = 8
RECENT = 600               # seconds before the newest event that count for the pattern
UNDERWAY = 60              # seconds: a SIGTERM or a start this recent, with no end logged, is a restart going on now
# The events a master logs under its own PID.
MASTER_EVENTS = ('listening', 'worker_class', 'signal_term', 'signal_other', 'master_shutdown', 'worker_timeout',
                 'worker_sigkill', 'connection_in_use', 'bind_retry', 'app_failed_load', 'worker_failed_boot')


def _new(pid, at, time_text):
    return {'pid': pid, 'started': at, 'time': time_text, 'listening': None, 'served': False, 'worker_class': None,
            'version': None, 'signals': [], 'stopped': None, 'end': None, 'worker_boots': 0, 'worker_timeouts': 0}


def generations(events):
    """Log events -> one record per master, oldest first (the last GENERATIONS_KEPT):
    {pid, started (epoch or None when its start is before the tail), time (the log's own time text), listening (the
    address it logged, None under --reuse-port), served (it logged "Listening at"), worker_class, version,
    signals [{signal, at}], stopped, end, worker_boots, worker_timeouts}.
    `end`: 'shutdown' ("Shutting down: Master"), 'bind_failed' (it never listened), 'failed' (its worker failed to
    boot or the app failed to load: it gave up on its own), 'vanished' (a later master started and this one logged no
    end: killed by SIGKILL or crashed), None (the last one: it may still run)."""
    found, by_pid = [], {}
    for event in events:
        kind, pid, at = event['event'], event.get('pid'), event.get('epoch')
        if kind == 'starting':
            gen = by_pid[pid] = _new(pid, at, event.get('time'))
            gen['version'] = event.get('version')
            found.append(gen)
        elif kind in MASTER_EVENTS and pid is not None:
            gen = by_pid.get(pid)
            if gen is None:   # the tail begins inside this master's run
                gen = by_pid[pid] = _new(pid, None, event.get('time'))
                found.append(gen)
            _apply(gen, event, kind, at)
            if kind == 'listening' and gen['listening']:
                _replaced(found, gen)
        elif kind == 'worker_boot' and found:
            running = [g for g in found if g['end'] is None]
            (running or found)[-1]['worker_boots'] += 1
    return found[-GENERATIONS_KEPT:]


def _replaced(found, gen):
    """A master that now listens where an earlier one listened, which logged no end: that one is gone (two masters
    cannot hold one address; each master of two runners on other ports keeps its own record open). Not under
    --reuse-port: there two masters may share one address, and none logs it."""
    for other in found:
        if other is not gen and other['end'] is None and other['listening'] == gen['listening']:
            other['end'] = 'vanished'


def _apply(gen, event, kind, at):
    if kind == 'listening':
        gen['listening'], gen['served'] = event.get('url'), True
    elif kind == 'worker_class':
        gen['worker_class'] = event.get('worker_class')
    elif kind in ('signal_term', 'signal_other'):
        gen['signals'].append({'signal': event.get('signal', 'term'), 'at': at})
    elif kind == 'master_shutdown':
        gen['stopped'], gen['end'] = at, 'shutdown'
    elif kind in ('worker_timeout', 'worker_sigkill'):
        gen['worker_timeouts'] += kind == 'worker_timeout'
    elif kind in ('bind_retry', 'app_failed_load', 'worker_failed_boot'):   # "Reason:" follows "Shutting down"
        gen['stopped'], gen['end'] = at, 'bind_failed' if kind == 'bind_retry' else 'failed'


def pattern(gens, newest=None, within=RECENT):
    """How often masters were restarted in the last `within` s before `newest` (default: the last start)
    -> {restarts, span, period, jitter, regular, signals: {name: count}, text} or None below one restart.
    `period` is the median gap between starts, `jitter` the largest distance of a gap from it; regular when
    every gap is within max(1 s, a quarter of the period) of it (log times have whole seconds)."""
    starts = sorted(g['started'] for g in gens if g['started'] is not None)
    if newest is None:
        newest = starts[-1] if starts else None
    starts = [s for s in starts if newest - s <= within] if starts else []
    if len(starts) < 2:
        return None
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    period = sorted(gaps)[len(gaps) // 2]
    jitter = max(abs(g - period) for g in gaps)
    regular = len(gaps) >= 2 and jitter <= max(1.0, period / 4.0)
    signals = {}
    for gen in gens:
        for sig in gen['signals']:
            if sig['at'] is not None and sig['at'] >= newest - within:
                signals[sig['signal']] = signals.get(sig['signal'], 0) + 1
    span = starts[-1] - starts[0]
    text = 'restarted %d time%s in %d s' % (len(gaps), '' if len(gaps) == 1 else 's', span)
    if regular:
        text += ', every %d s +/- %d' % (round(period), round(max(jitter, 1)))
    elif len(gaps) >= 2:
        text += ', %d to %d s apart' % (min(gaps), max(gaps))
    if signals:
        text += ' (%s)' % ', '.join('%d x SIG%s' % (n, name.upper()) for name, n in sorted(signals.items()))
    return {'restarts': len(gaps), 'span': span, 'period': period, 'jitter': jitter, 'regular': regular,
            'signals': signals, 'text': text}


def _clock(text):
    """`2026-12-04 19:00:57 +0000` -> `19:00:57` (the log's own clock)."""
    return (text or '')[11:19] or '??:??:??'


def describe(gen):
    """One line for one master: when it started, what it served, what stopped it."""
    head = '%s master %d' % (_clock(gen['time']), gen['pid'])
    if gen['started'] is None:
        head += ' (started before the log tail)'
    else:
        what = ', '.join(x for x in (gen['worker_class'], gen['listening']) if x)
        head += ' started' + (' (%s)' % what if what else '')
    parts = [head]
    if gen['worker_boots']:
        parts.append('%d worker boot%s' % (gen['worker_boots'], '' if gen['worker_boots'] == 1 else 's'))
    if gen['worker_timeouts']:
        parts.append('%d WORKER TIMEOUT' % gen['worker_timeouts'])
    for sig in gen['signals']:
        parts.append('SIG%s after %s' % (sig['signal'].upper(), _after(gen, sig['at'])))
    ends = {'shutdown': 'shut down after %s', 'bind_failed': 'could not bind, gave up after %s',
            'failed': 'could not boot the app, gave up after %s',
            'vanished': 'gone without a shutdown line (killed or crashed) before the next master listened'}
    if gen['end']:
        parts.append(ends[gen['end']] % _after(gen, gen['stopped']) if '%s' in ends[gen['end']] else ends[gen['end']])
    return ', '.join(parts)


def _after(gen, at):
    if at is None or gen['started'] is None:
        return '?'
    return duration(at - gen['started'])


def duration(seconds):
    """8 -> '8 s', 3588 -> '60 min', 90000 -> '25 h'."""
    if seconds < 120:
        return '%d s' % round(seconds)
    return '%d min' % round(seconds / 60.0) if seconds < 7200 else '%d h' % round(seconds / 3600.0)


def timeline(gens, limit=TIMELINE_LINES):
    """The last `limit` masters, one line each, oldest first."""
    return [describe(g) for g in gens[-limit:]]


def stopped_from_outside(events, gens, within=RECENT):
    """-> (the "Handling signal: term" events, the masters that served and were stopped from outside - shut down after
    a SIGTERM, or gone without a line (SIGKILL) - the newest epoch of the log), within the last `within` s of the log
    (`events` with their `epoch`). A master that gave up on its own (its worker failed to boot) was not stopped."""
    newest = max([e['epoch'] for e in events if e.get('epoch')] or [0])
    terms = [e for e in events if e['event'] == 'signal_term' and e.get('epoch') and newest - e['epoch'] <= within]
    stopped = [g for g in gens if g['end'] == 'vanished' or
               (g['end'] == 'shutdown' and any(sig['signal'] == 'term' for sig in g['signals']))]
    ended = [g for g in stopped if g['served'] and g['started'] and newest - g['started'] <= within]
    return terms, ended, newest


def restarted_from_outside(terms, ended):
    """The periodic-restart rule: two or more SIGTERMs, or two or more masters that served and were stopped."""
    return len(terms) >= 2 or len(ended) >= 2


def unsettled(log, masters, now, window):
    """Why the log, read before the stability window, already shows that the app's current run is not stable -> a
    text, or None (then only the window can tell). `log`: probes/logfile facts; `masters`: the running masters
    ({pid, age}); `now` and the events' epochs are the host's clock.
    - a running master logged a WORKER TIMEOUT (or a worker SIGKILLed) in the last `window` s;
    - the masters were restarted from outside (restarted_from_outside in the last RECENT s) and the newest master is
      younger than that: a runner restarts it, and will again;
    - two or more masters could not boot the app in the last RECENT s, the last within `window` s: a crash loop."""
    if not log:
        return None
    events, gens = log.get('events') or [], log.get('generations') or []
    pids = set(m['pid'] for m in masters)
    kills = [e for e in events if e['event'] in ('worker_timeout', 'worker_sigkill') and e.get('pid') in pids and
             e.get('epoch') and now - e['epoch'] <= window]
    if kills:
        return '%s, logged %d s before the window' % (kills[-1]['line'].split('] ', 3)[-1], round(now - kills[-1]['epoch']))
    terms, ended, newest = stopped_from_outside(events, gens)
    if restarted_from_outside(terms, ended) and (not masters or min(m['age'] for m in masters) < RECENT):
        found = pattern(gens, newest=newest)
        return 'the log already shows the masters restarted from outside: %s' % (
            found['text'] if found else '%d x "Handling signal: term"' % len(terms))
    failed = [g for g in gens if g['end'] == 'failed' and g['stopped'] and now - g['stopped'] <= RECENT]
    if len(failed) >= 2 and now - failed[-1]['stopped'] <= window:
        return 'the log already shows a crash loop: %d masters could not boot the app in the last %s' % (
            len(failed), duration(now - failed[0]['stopped']))
    return None


def restart_underway(gens, alive, now, within=UNDERWAY):
    """The restart the log shows half done right now -> a text, or None. Then the service is neither the old run nor
    the new one yet: watch it rather than judge it. `gens`: generations() of the log; `alive`: the PIDs of the app's
    masters running now (a master that logged no end and is gone ended without a line: nothing of it is underway);
    `now`: the host's clock, as the events' epochs.
    - a running master handled SIGTERM in the last `within` s and has not shut down: it is stopping, and what
      replaces it may not serve yet;
    - a running master started in the last `within` s and does not listen yet: it is booting."""
    for gen in reversed(gens):
        if gen['pid'] not in alive or gen['end'] is not None:
            continue
        terms = [sig['at'] for sig in gen['signals'] if sig['signal'] == 'term' and sig['at'] is not None and
                 now - sig['at'] <= within]
        if terms:
            return 'master %d handled SIGTERM %s ago and has not shut down yet' % (gen['pid'], duration(max(now - terms[-1], 0)))
        if not gen['served'] and gen['started'] is not None and now - gen['started'] <= within:
            return 'master %d started %s ago and does not listen yet' % (gen['pid'], duration(max(now - gen['started'], 0)))
    return None
