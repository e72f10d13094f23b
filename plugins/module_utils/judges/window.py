# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the stability window saw the app's gunicorn processes and its log do (facts['healthz']['watch'], see
probes/window.py), in the words the healthz, process and boot judges put in their evidence.

Pure: no I/O, no Ansible."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


def watch_of(facts):
    return (facts.get('healthz') or {}).get('watch') or {}


def _changes(facts, role, what):
    return [c for c in watch_of(facts).get('changes') or [] if c['role'] == role and c['what'] == what]


def _log_line(facts, event, pid=None, worker=None):
    """The first log event of this kind (of master `pid`, or about `worker`) read during the window, or None."""
    for e in watch_of(facts).get('log_events') or []:
        if e['event'] == event and (pid is None or e.get('pid') == pid) and \
                (worker is None or str(e.get('worker')) == str(worker)):
            return e
    return None


def master_exits(facts, primary_pid=None):
    """-> one dict per master that exited during the window: pid, at, by (the master that replaced it: started in
    the window, or None), by_at, term (its "Handling signal: term" event, or None), failed (the log line that says it
    gave up on its own: its worker failed to boot, or None), serving (it served the service:
    the primary master `primary_pid` or a replacement, not a second master that only came and went)."""
    starts = _changes(facts, 'master', 'started')
    used, found = set(), []
    exited = _changes(facts, 'master', 'exited')
    gone = set(c['pid'] for c in exited)
    # A master that handled TERM and was still shutting down when the window ended counts as going.
    exited += [{'pid': e['pid'], 'at': e['at']} for e in watch_of(facts).get('log_events') or []
               if e['event'] == 'signal_term' and e.get('pid') not in gone and _was_master(facts, e.get('pid'))]
    for exit_ in exited:
        new = next((s for s in starts if s['pid'] != exit_['pid'] and s['pid'] not in used), None)
        if new is not None:
            used.add(new['pid'])
        found.append({'pid': exit_['pid'], 'at': exit_['at'], 'by': new['pid'] if new else None,
                      'by_at': new['at'] if new else None, 'term': _log_line(facts, 'signal_term', exit_['pid']),
                      'failed': _failed_boot(facts, exit_['pid'])})
    replacements = set(m['by'] for m in found if m['by'])
    started = set(s['pid'] for s in starts)
    for m in found:
        m['serving'] = m['pid'] == primary_pid or m['pid'] in replacements or \
            (primary_pid is None and m['pid'] not in started)
    return found


def _failed_boot(facts, pid):
    """Master `pid`'s "Reason: Worker failed to boot." / "App failed to load." (the window's lines, else the log's
    masters) -> a short text, or None: a master that gives up on its own was not stopped from outside."""
    e = _log_line(facts, 'worker_failed_boot', pid) or _log_line(facts, 'app_failed_load', pid)
    if e:
        return e['line'].split('] ', 3)[-1]
    gens = (facts.get('log') or {}).get('generations') or []
    if any(g['pid'] == pid and g['end'] == 'failed' for g in gens):
        return 'its log says it could not boot the app'
    return _never_started(facts, pid, gens)


def _never_started(facts, pid, gens):
    """A master the probe saw with no worker and no socket of its own, which never served in the log and handled no
    SIGTERM, and exited: it could not start (a worker class or hub refused before its log opened) -> a text, or None."""
    master = next((m for m in (facts.get('process') or {}).get('masters') or [] if m['pid'] == pid), None)
    sockets = (facts.get('listen') or {}).get('app_sockets') or []
    if master is None or master['workers'] or any(s.get('pid') == pid for s in sockets) or \
            any(g['pid'] == pid and (g['served'] or g['signals']) for g in gens) or _log_line(facts, 'signal_term', pid):
        return None
    return 'it had no worker and no socket when the probe looked, and handled no SIGTERM: it could not start'


def _was_master(facts, pid):
    masters = set(m['pid'] for m in (facts.get('process') or {}).get('masters') or [])
    return pid in masters | set(c['pid'] for c in _changes(facts, 'master', 'started'))


def describe_exit(m):
    """'master 13086 replaced by 13132 at +6.2 s ("Handling signal: term" at +6.0 s)'."""
    term = ' ("Handling signal: term" at +%.1f s)' % m['term']['at'] if m['term'] else \
        ' (it gave up on its own: %s)' % m['failed'] if m.get('failed') else ''
    if m['by']:
        return 'master %d replaced by %d at +%.1f s%s' % (m['pid'], m['by'], max(m['at'], m['by_at']), term)
    return 'master %d exited at +%.1f s%s and no master replaced it within the window' % (m['pid'], m['at'], term)


def second_masters(facts, exits):
    """Masters that started during the window and replaced none (a second runner's) -> texts."""
    replacements = set(m['by'] for m in exits)
    gone = dict((m['pid'], m['at']) for m in exits)
    return ['master %d started at +%.1f s beside the running one%s' % (
        s['pid'], s['at'], ' and exited at +%.1f s' % gone[s['pid']] if s['pid'] in gone else '')
        for s in _changes(facts, 'master', 'started') if s['pid'] not in replacements]


def from_outside(facts, exits):
    """Whether a master was replaced, or a second one started, other than by masters that gave up on their own (a
    crash loop: each master could not boot the app and its runner started the next)."""
    failed = set(m['pid'] for m in exits if m['failed'])
    replacements = set(m['by'] for m in exits)
    seconds = [s['pid'] for s in _changes(facts, 'master', 'started') if s['pid'] not in replacements]
    return any(m['by'] and not m['failed'] for m in exits) or any(pid not in failed for pid in seconds)


def worker_restarts(facts):
    """Workers that exited while their master ran on, each with the worker booted after it and the log line that
    says why -> texts."""
    gone_masters = set(c['pid'] for c in _changes(facts, 'master', 'exited'))
    new_masters = set(c['pid'] for c in _changes(facts, 'master', 'started'))
    booted = [c for c in _changes(facts, 'worker', 'started') if c['master'] not in new_masters]
    found = []
    for exit_ in _changes(facts, 'worker', 'exited'):
        if exit_['master'] in gone_masters:
            continue   # it went with its master
        new = next((b for b in booted if b['master'] == exit_['master'] and b['at'] >= exit_['at']), None)
        why = _log_line(facts, 'worker_timeout', worker=exit_['pid']) or \
            _log_line(facts, 'worker_sigkill', worker=exit_['pid']) or _log_line(facts, 'worker_exit', worker=exit_['pid'])
        found.append('worker %d of master %s exited at +%.1f s%s%s' % (
            exit_['pid'], exit_['master'] if exit_['master'] is not None else '?', exit_['at'],
            ', worker %d booted at +%.1f s' % (new['pid'], new['at']) if new else '',
            ' (%s)' % why['line'].split('] ', 3)[-1] if why else ''))
    return found


def slow_boots(facts):
    """The workers the window saw booting for longer than the service's worker timeout (`boot_limit`)."""
    return watch_of(facts).get('slow_boots') or []


def seconds(facts):
    """How long the window watched, or None when there was none (the service was old enough)."""
    watch = watch_of(facts)
    window = (facts.get('healthz') or {}).get('window_seconds')
    return watch.get('seconds') if watch and (window or watch.get('changes')) else None


def ended_early(facts):
    """' (the window ended at +3.4 s: ...)' when the evidence ended it before its time, else ''."""
    watch = watch_of(facts)
    if not watch.get('ended_by'):
        return ''
    return ' (the window ended at +%.1f s of %.1f s: the evidence was conclusive)' % (
        watch['seconds'], (facts.get('healthz') or {}).get('window_seconds') or 0)
