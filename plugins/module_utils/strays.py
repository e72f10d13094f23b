# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Choose and stop the earlier runs of an app (runbook 1.1), by proof of belonging only.

What may be stopped comes from the process probe (`probes.process.collect`: app spec *and* directory
for gunicorn, the app module or a file under the app directory for other runs): the same proof the
diagnosis uses, never a second one. On top of it, a list of processes that are never signalled
whatever they look like: PID 1, this process and its parents (Ansible), sshd, init systems and
process managers, and the service's own master with its workers (`keep_pids`).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal
import time

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils import processes
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.processes import is_within, own_lineage
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import process

# Never signalled, whatever their command line says.
NEVER_NAMES = frozenset(('sshd', 'systemd', 'init', 'supervisord', 'dockerd', 'containerd', 'tini',
                         'dumb-init', 'ansible-playbook', 'ansible'))
MANAGED_RUNNERS = ('supervisord', 'systemd')


class StrayConflict(Exception):
    """A process holds what the service needs but may not be stopped: the message says what to do."""


def descendants(psutil, pids):
    found = set()
    for pid in pids:
        try:
            found.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except Exception:  # psutil.NoSuchProcess: gone
            continue
    return found


def _protected_reason(psutil, pid, protected):
    if pid == 1:
        return 'PID 1'
    if pid in protected:
        return 'this Ansible run or the service kept'
    try:
        name = psutil.Process(pid).name()
    except Exception:  # gone
        return 'gone'
    if name in NEVER_NAMES:
        return 'a %s process' % name
    return ''


def choose(psutil, app, chdir, port=None, keep_pids=(), protected=None):
    """-> dict(stop=[...], skipped=[...], conflicts=[...]) for the app's earlier runs.

    `stop`: the app's gunicorn masters (with their workers) and other runs (dev servers,
    `python main.py`, orphaned workers) not kept; each with `reason`.
    `conflicts`: masters another process manager restarts (stopping them would only start a fight),
    and non-app processes listening on `port`: stabilize cannot go on while they are there.
    """
    protected = set(protected if protected is not None else own_lineage(psutil))
    keep = set(int(p) for p in keep_pids if p)
    keep |= descendants(psutil, keep)
    facts = process.collect(psutil, app, chdir, exclude_pids=protected)
    stop, skipped, conflicts = [], [], []
    listeners = _listeners_on(psutil, port) if port else {}

    def consider(entry, reason):
        why_not = _protected_reason(psutil, entry['pid'], protected | keep)
        if why_not:
            skipped.append(dict(entry, reason='not stopped: %s' % why_not))
            return
        if entry['pid'] in listeners:
            reason += '; listens on the expected port %s' % port
        stop.append(dict(entry, reason=reason))

    for master in facts['masters']:
        if master['pid'] in keep:
            continue
        runner = master.get('runner') or {}
        entry = {'pid': master['pid'], 'cmdline': master['cmdline'], 'cwd': master['cwd'], 'kind': 'gunicorn_master'}
        if runner.get('kind') in MANAGED_RUNNERS and is_process_manager(psutil, runner):
            conflicts.append(dict(entry, reason='gunicorn master of the app started by %s (%s): a second runner; '
                                  'stopping it would only make %s start it again' % (
                                      runner['kind'], runner.get('detail'), runner['kind'])))
            continue
        if runner.get('kind') == 'shell_loop' and runner.get('pid'):
            loop = _loop_entry(psutil, runner['pid'], app, chdir)
            if loop and loop['pid'] not in set(e['pid'] for e in stop):
                consider(loop, 'shell loop that starts the app again and again (runbook 3.3, two runners): %s' % (
                    loop['cmdline'][:160]))
        consider(entry, '%s; started by %s' % (master['reason'], runner.get('kind', 'unknown')))
        for worker in master['workers']:
            consider({'pid': worker['pid'], 'cmdline': 'gunicorn worker', 'cwd': master['cwd'], 'kind': 'gunicorn_worker',
                      'master': master['pid']}, 'worker of gunicorn master %d' % master['pid'])
    for stray in facts['strays']:
        if stray['pid'] in keep:
            continue
        consider({'pid': stray['pid'], 'cmdline': stray['cmdline'], 'cwd': stray['cwd'], 'kind': stray['kind']},
                 stray['reason'])
    chosen = set(e['pid'] for e in stop) | keep | set(c['pid'] for c in conflicts)
    for pid, name in sorted(listeners.items()):
        if pid not in chosen and pid is not None:
            conflicts.append({'pid': pid, 'cmdline': _cmdline(psutil, pid), 'cwd': None, 'kind': 'port_holder',
                              'reason': 'listens on the expected port %s and is not this app (%s): stabilize never '
                                        'stops it; free the port or set PORT to the port the platform routes to'
                                        % (port, name)})
    return {'stop': stop, 'skipped': skipped, 'conflicts': conflicts}


def _loop_entry(psutil, pid, app, chdir):
    """The shell loop that runs the app (its command names the app spec or module, it runs in the app's
    directory) as a stop entry, or None."""
    try:
        proc = psutil.Process(pid)
        cmd = ' '.join(proc.cmdline())
        cwd = proc.cwd()
    except Exception:  # gone, or not ours to read
        return None
    names = [app] + sorted(process.app_module_names(app))
    if not any(name in cmd for name in names) or not is_within(cwd, chdir):
        return None
    return {'pid': pid, 'cmdline': cmd, 'cwd': cwd, 'kind': 'runner_loop'}


def is_process_manager(psutil, runner):
    """The runner the process probe names is really a process manager (its parent is supervisord by
    name or script, or it is pid 1 for systemd) - not a shell whose command line merely mentions one."""
    if runner['kind'] == 'systemd':
        return runner.get('pid') == 1
    try:
        proc = psutil.Process(runner['pid'])
        argv = proc.cmdline()
        return proc.name() == 'supervisord' or any(os.path.basename(a) == 'supervisord' for a in argv[:2])
    except Exception:  # gone, or no pid
        return False


def _cmdline(psutil, pid):
    try:
        return ' '.join(psutil.Process(pid).cmdline())
    except Exception:  # gone or not readable
        return ''


def _listeners_on(psutil, port):
    """{pid: name} of the processes with a LISTEN socket on `port` (workers share their master's)."""
    found = {}
    try:
        conns = psutil.net_connections(kind='tcp')
    except Exception:  # psutil.AccessDenied
        return found
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr[1] == int(port) and conn.pid:
            try:
                found[conn.pid] = psutil.Process(conn.pid).name()
            except Exception:  # gone
                continue
    return found


def stop(psutil, chosen, grace):
    """TERM every chosen process (masters first; a master's workers are left to it), wait for the exit
    event up to `grace` s, KILL the rest, wait again. -> the chosen entries with `signals`, `outcome`
    and `seconds`, and the pids still alive.

    psutil.Process checks the process start time before signalling, so a PID reused since the scan
    is never hit; a zombie counts as exited (nobody may reap it here).
    """
    started = time.time()
    handles = []
    order = {'runner_loop': 0, 'gunicorn_master': 1}
    for entry in sorted(chosen, key=lambda e: order.get(e['kind'], 2)):
        try:
            proc = psutil.Process(entry['pid'])
        except Exception:  # exited since the scan
            handles.append((dict(entry, signals=[], outcome='had exited before it was signalled'), None))
            continue
        handles.append((dict(entry, signals=[]), proc))
    for entry, proc in handles:
        # A worker is its master's to stop: a worker TERMed behind its master's back is replaced by a new one.
        if entry['kind'] == 'gunicorn_worker' and any(e['pid'] == entry.get('master') for e, p in handles):
            continue
        if proc is not None and processes.alive(psutil, proc):
            try:
                proc.send_signal(signal.SIGTERM)
                entry['signals'].append('TERM')
            except Exception:  # exited meanwhile (a master takes its workers along)
                pass
    live = [p for e, p in handles if p is not None]
    left = processes.wait_gone(psutil, live, grace)
    for proc in left:
        try:
            proc.kill()
            next(e for e, p in handles if p is proc)['signals'].append('KILL')
        except Exception:  # exited in between
            pass
    still = processes.wait_gone(psutil, left, 5.0)
    results = []
    for entry, proc in handles:
        if proc is None:
            results.append(entry)
            continue
        if proc in still:
            entry['outcome'] = 'still alive after KILL'
        elif 'KILL' in entry['signals']:
            entry['outcome'] = 'killed after the %g s grace period' % grace
        elif entry['signals']:
            entry['outcome'] = 'exited after TERM'
        else:
            entry['outcome'] = 'exited with its master'
        entry['seconds'] = round(time.time() - started, 2)
        results.append(entry)
    return results, [p.pid for p in still]


def describe(entry):
    """One line for the report: pid, what it runs, why it was chosen."""
    cmd = entry.get('cmdline') or ''
    return '%d (%s): %s' % (entry['pid'], cmd[:120], entry['reason'])
