# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Choose and stop the earlier runs of an app (runbook 1.1), by proof of belonging only.

What may be stopped comes from the process probe (`probes.process.collect`: app spec *and* directory
for gunicorn, `-m <app module>` in the app directory or the app module's own file for other runs):
the same proof the diagnosis uses, never a second one. On top of it, a process is only signalled
when it is provably this host's and the service's: its cwd and uid can be read, it runs as the
service's user, and it lives in our own PID and mount namespaces (not a container's). Never, whatever
they look like: PID 1, this process and its parents (Ansible), sshd, init systems and process
managers, and the service's own master with its workers (`keep_pids`).

Each chosen process carries the start time read at the scan; every signal goes through
`processes.signal_if_same`, so a PID handed to another process since the scan is never hit.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal
import time

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import processes, safe_read
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.processes import is_within, own_lineage
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import process, restart_runner

# Never signalled, whatever their command line says.
NEVER_NAMES = frozenset(('sshd', 'systemd', 'init', 'supervisord', 'dockerd', 'containerd', 'tini',
                         'dumb-init', 'ansible-playbook', 'ansible'))
MANAGED_RUNNERS = ('supervisord', 'systemd')


class StrayConflict(Exception):
    """A process holds what the service needs but may not be stopped: the message says what to do."""


def service_uid(psutil, keep_pids, chdir):
    """-> (uid, where it comes from): the uid of the service's running master, else the app directory's owner."""
    for pid in keep_pids:
        try:
            return psutil.Process(int(pid)).uids().real, 'the uid of the service master %s' % pid
        except Exception:  # gone: the next one, or the directory's owner
            continue
    try:
        return os.stat(chdir).st_uid, 'the owner of %s' % chdir
    except OSError:
        return None, 'unknown (%s cannot be read)' % chdir


def _not_provably_ours(psutil, entry, owner):
    """'' when the process an entry names may be signalled as the app's, else why not.

    Everything is read from one psutil.Process whose start time must be the scan's, and the PID is
    checked to still name it at the end: every fact is about the scanned process. A gunicorn worker
    may run as another user (`--user`); it is proven by its master. `owner`: (uid, where it comes from).
    """
    if entry.get('create_time') is None:
        return 'no start time from the scan'
    try:
        proc = psutil.Process(entry['pid'])
        if abs(proc.create_time() - entry['create_time']) >= processes.SAME_START:
            return 'its PID names another process than the one scanned'
        cwd, real_uid = proc.cwd(), proc.uids().real
    except psutil.NoSuchProcess:
        return 'gone'
    except Exception:  # psutil.AccessDenied, or a zombie: not ours to read
        return 'its cwd or uid cannot be read'
    if not cwd:
        return 'its cwd cannot be read'
    if not processes.in_our_namespaces(entry['pid']):
        return 'it runs in another PID or mount namespace (a container), or they cannot be read'
    if entry['kind'] != 'gunicorn_worker' and real_uid != owner[0]:
        return 'it runs as uid %d, not as the service\'s user (uid %s: %s)' % (real_uid, owner[0], owner[1])
    if not processes.alive(psutil, proc):
        return 'gone'
    return ''


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


def choose(psutil, app, chdir, port=None, keep_pids=(), protected=None, uid=None, facts=None):
    """-> dict(stop=[...], skipped=[...], conflicts=[...], uid=...) for the app's earlier runs.

    `stop`: the app's gunicorn masters (with their workers) and other runs (dev servers,
    `python main.py`, orphaned workers) not kept; each with `reason` and the `create_time` it was
    scanned with. `uid`: the service's user (default: see service_uid); runs of other users are
    skipped, as are processes in other namespaces or whose cwd cannot be read.
    `conflicts`: masters another process manager restarts (stopping them would only start a fight),
    and processes listening on `port` that are not stopped: stabilize cannot go on while they are there.
    `facts`: process.collect's answer for the app when the caller just read it (clean_up.survey), else read here.
    """
    protected = set(protected if protected is not None else own_lineage(psutil))
    keep = set(int(p) for p in keep_pids if p)
    owner = (uid, 'the service\'s user') if uid is not None else service_uid(psutil, keep, chdir)
    keep |= descendants(psutil, keep)
    facts = facts or process.collect(psutil, app, chdir, exclude_pids=protected)
    stop, skipped, conflicts = [], [], []
    listeners = _listeners_on(psutil, port) if port else {}
    master_pids = set(m['pid'] for m in facts['masters'])

    def consider(entry, reason):
        why_not = _protected_reason(psutil, entry['pid'], protected | keep) or \
            _not_provably_ours(psutil, entry, owner)
        if why_not:
            skipped.append(dict(entry, reason='not stopped: %s' % why_not))
            return False
        if entry['pid'] in listeners:
            reason += '; listens on the expected port %s' % port
        stop.append(dict(entry, reason=reason))
        return True

    for master in facts['masters']:
        if master['pid'] in keep:
            continue
        runner = master.get('runner') or {}
        entry = {'pid': master['pid'], 'cmdline': master['cmdline'], 'cwd': master['cwd'], 'kind': 'gunicorn_master',
                 'create_time': master['create_time']}
        if master['pid'] == 1:
            conflicts.append(dict(entry, reason="the app's gunicorn master is PID 1 of this PID namespace, a container's "
                                  'main process: stabilize never signals PID 1 and cannot replace it - set the '
                                  "container's command (CMD/ENTRYPOINT) to the canonical command and restart the "
                                  'container'))
            continue
        if runner.get('kind') in MANAGED_RUNNERS and is_process_manager(psutil, runner):
            conflicts.append(dict(entry, unit=runner.get('detail') if runner['kind'] == 'systemd' else None,
                                  program=runner.get('program'),
                                  reason='gunicorn master of the app started by %s (%s): a second runner; '
                                  'stopping it would only make %s start it again' % (
                                      runner['kind'], runner.get('detail'), runner['kind'])))
            continue
        loop, refused = runner_loop(psutil, master['pid'], app, chdir, master_pids)
        if refused and refused['pid'] not in set(c['pid'] for c in conflicts):
            conflicts.append(refused)
        if loop and loop['pid'] not in set(e['pid'] for e in stop):
            consider(loop, 'shell loop that starts the app\'s master again whenever it exits (its runner; runbook '
                     '3.3, two runners): %s' % loop['cmdline'][:160])
        master_stops = consider(entry, '%s; started by %s' % (master['reason'], runner.get('kind', 'unknown')))
        for worker in master['workers']:
            worker = {'pid': worker['pid'], 'cmdline': 'gunicorn worker', 'cwd': master['cwd'], 'kind': 'gunicorn_worker',
                      'master': master['pid'], 'create_time': worker['create_time']}
            if master_stops:  # a worker is the app's because its master is
                consider(worker, 'worker of gunicorn master %d' % master['pid'])
            else:
                skipped.append(dict(worker, reason='not stopped: its master %d is not stopped' % master['pid']))
    for stray in facts['strays']:
        if stray['pid'] in keep:
            continue
        consider({'pid': stray['pid'], 'cmdline': stray['cmdline'], 'cwd': stray['cwd'], 'kind': stray['kind'],
                  'create_time': stray['create_time']}, stray['reason'])
    conflicts += _port_conflicts(psutil, port, listeners, stop, skipped, keep | set(c['pid'] for c in conflicts))
    return {'stop': stop, 'skipped': skipped, 'conflicts': conflicts, 'uid': owner[0]}


def _port_conflicts(psutil, port, listeners, stop, skipped, settled):
    """Processes on `port` that stay: a run of the app that is not stopped (and why), or another program."""
    chosen = set(e['pid'] for e in stop) | settled
    not_stopped = dict((e['pid'], e['reason']) for e in skipped)
    found = []
    for pid, name in sorted(listeners.items()):
        if pid in chosen or pid is None:
            continue
        if pid in not_stopped:
            why = 'is a run of this app that stabilize does not stop (%s): stop it yourself' % not_stopped[pid]
        else:
            why = 'is not this app (%s): stabilize never stops it; free the port or set PORT to the port the ' \
                  'platform routes to' % name
        found.append({'pid': pid, 'cmdline': _cmdline(psutil, pid), 'cwd': None, 'kind': 'port_holder',
                      'reason': 'listens on the expected port %s and %s' % (port, why)})
    return found


LOOP_WORDS = ('while ', 'until ', 'for ')


def _shell_script(argv, cwd):
    """The text of the script a shell runs (`bash loop.sh`, `sh -e /srv/run.sh`; bounded read), or ''
    for an inline command (`bash -c '...'`) or an interactive shell."""
    args = argv[1:]
    if '-c' in args or any(a.startswith('-') and 'c' in a and not a.startswith('--') for a in args):
        return ''
    path = next((a for a in args if not a.startswith('-')), None)
    if not path:
        return ''
    path = path if os.path.isabs(path) else os.path.join(cwd or '/', path)
    return safe_read.read_text(path, 64 << 10, follow=True).data or ''


def runner_loop(psutil, master_pid, app, chdir, master_pids):
    """The shell loop that restarts this master of the app -> (stop entry, None) when it is proven the app's
    runner: a shell whose command or script names the app and loops (`while true; do gunicorn ...; done`,
    under nohup or cron), that runs in the app directory (or names it) and whose children are all masters
    of the app (`master_pids`). A loop of the app that also runs anything else -> (None, conflict entry):
    it is never stopped. No such loop (PID 1, an interactive shell, a process manager) -> (None, None)."""
    try:
        parent = psutil.Process(master_pid).parent()
        if parent is None or parent.pid == 1 or parent.name() not in process.SHELLS:
            return None, None
        argv, cwd, created = parent.cmdline(), parent.cwd(), parent.create_time()
        children = parent.children()
    except Exception:  # gone, or not ours to read
        return None, None
    text = ' '.join(argv) + '\n' + _shell_script(argv, cwd)
    names = [app] + sorted(process.app_module_names(app))
    in_app_dir = is_within(cwd, chdir) or chdir in text or os.path.realpath(chdir) in text
    if not any(n in text for n in names) or not any(w in text for w in LOOP_WORDS) or not in_app_dir:
        return None, None
    # What it runs (its -c command or its script): the text a crontab line that starts it holds.
    command = next((a for a in argv[1:] if not a.startswith('-')), '')
    entry = {'pid': parent.pid, 'cmdline': ' '.join(argv), 'cwd': cwd, 'kind': 'runner_loop', 'create_time': created,
             'command': command}
    others = [c for c in children if c.pid not in master_pids]
    if others:
        return None, dict(entry, reason='shell loop that restarts the app\'s master %d also runs %s: stabilize never '
                          'stops a shell that runs anything besides the app; stop that loop yourself' % (
                              master_pid, ', '.join('%d (%s)' % (c.pid, _cmdline(psutil, c.pid)[:60]) for c in others)))
    return entry, None


def crontab_origins(stopped, patterns):
    """The crontab lines that start the stopped shell loops again (at @reboot or on their schedule): cron runs a
    line's command with `sh -c COMMAND`, so the line holds the loop's command -> [dict(file, line, pid)]. Named in
    the report with the remedy, never edited."""
    return [{'file': path, 'line': line, 'pid': loop['pid']} for loop in stopped
            if loop.get('kind') == 'runner_loop' and len(loop.get('command') or '') > 3
            for path, line in restart_runner.crontab_lines(patterns, [loop['command']])]


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

    Each entry names its process by pid *and* the start time of the scan: a process whose PID now
    names another one has exited, and every signal goes through processes.signal_proc, so the
    newcomer is never hit. A zombie counts as exited (nobody may reap it here).
    """
    started = time.time()
    handles = [_handle(psutil, entry) for entry in sorted(chosen, key=lambda e: STOP_ORDER.get(e['kind'], 2))]
    for entry, proc in handles:
        # A worker is its master's to stop: a worker TERMed behind its master's back is replaced by a new one.
        if entry['kind'] == 'gunicorn_worker' and any(e['pid'] == entry.get('master') for e, p in handles):
            continue
        if proc is not None and processes.alive(psutil, proc) and processes.signal_proc(psutil, proc, signal.SIGTERM):
            entry['signals'].append('TERM')
    live = [p for e, p in handles if p is not None]
    left = processes.wait_gone(psutil, live, grace)
    for proc in left:
        if processes.signal_proc(psutil, proc, signal.SIGKILL):
            next(e for e, p in handles if p is proc)['signals'].append('KILL')
    still = processes.wait_gone(psutil, left, 5.0)
    results = []
    for entry, proc in handles:
        if proc is not None:
            entry['outcome'] = _outcome(entry, proc in still, grace)
            entry['seconds'] = round(time.time() - started, 2)
        results.append(entry)
    return results, [p.pid for p in still]


STOP_ORDER = {'runner_loop': 0, 'gunicorn_master': 1}


def _handle(psutil, entry):
    """(entry with `signals`, the psutil.Process it names) - or None when that process has exited
    (its PID gone or now another process's)."""
    entry = dict(entry, signals=[])
    try:
        proc = psutil.Process(entry['pid'])
        if entry.get('create_time') is not None and \
                abs(proc.create_time() - entry['create_time']) < processes.SAME_START:
            return entry, proc
    except Exception:  # psutil.NoSuchProcess: exited since the scan
        pass
    entry['outcome'] = 'had exited before it was signalled'
    return entry, None


def _outcome(entry, alive, grace):
    if alive:
        return 'still alive after KILL'
    if 'KILL' in entry['signals']:
        return 'killed after the %g s grace period' % grace
    if entry['signals']:
        return 'exited after TERM'
    return 'exited with its master'


def describe(entry):
    """One line for the report: pid, what it runs, why it was chosen (a unit, without a pid: its reason names it)."""
    cmd = entry.get('cmdline') or ''
    if entry.get('pid') is None:
        return entry['reason']
    return '%d (%s): %s' % (entry['pid'], cmd[:120], entry['reason'])
