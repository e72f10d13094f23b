# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is the service up and staying up? (runbook 1.3/1.4): one master of the app LISTENs on $PORT,
/healthz answers 200, and for a window nothing changes - no `Handling signal: term`, no worker
restart, the same master - watched on the process table and the log, bounded by a timeout.

Reuses the probes: `process.collect` (which masters are the app's), `healthz.sample` (the request),
`gunicorn.scan_log` (what the log says). Observes only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import time

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import processes, safe_read
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import cpu_load, healthz, listen, logfile, process

POLL = 0.1            # process table and log: cheap, looked at often
HEALTHZ_EVERY = 0.5   # /healthz during the window
TAIL_BYTES = 256 << 10
# Log events that end a stable window.
UNSTABLE_EVENTS = ('signal_term', 'master_shutdown', 'worker_boot', 'worker_exit', 'worker_timeout', 'worker_sigkill',
                   'worker_failed_boot', 'app_failed_load', 'worker_exception', 'dev_server')
GAVE_UP_EVENTS = ('worker_failed_boot', 'app_failed_load', 'invalid_port')
GIVE_UP_AFTER = 2.0   # seconds with no master before the log is asked whether gunicorn gave up


class Unstable(Exception):
    """The service is not (or not staying) up; `why` says what was seen, `evidence` the log lines."""

    def __init__(self, why, evidence=None, kind='unstable'):
        Exception.__init__(self, why)
        self.why = why
        self.evidence = evidence or []
        self.kind = kind


class LogTail(object):
    """New lines of a log since the last read (a log that is replaced or truncated is read anew). The service's
    logs are read as safe_read does for the user's log path: followed to a regular file, never a FIFO or device."""

    def __init__(self, path, from_start=False):
        self.path = path
        self.offset = 0 if from_start else self._size()
        self.inode = self._inode()
        self.head = self._head()

    def _head(self):
        return safe_read.read_bytes(self.path, 64, follow=True).data or b''

    def _size(self):
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def _inode(self):
        try:
            return os.stat(self.path).st_ino
        except OSError:
            return None

    def read(self):
        inode, head = self._inode(), self._head()
        # A log replaced (archived, rotated) or truncated since the last read is read from its start.
        if inode != self.inode or self._size() < self.offset or head[:len(self.head)] != self.head:
            self.offset, self.inode = 0, inode
        self.head = head
        done = safe_read.read_bytes(self.path, TAIL_BYTES, follow=True, start=self.offset)
        if done.data is None:
            return []
        self.offset += len(done.data)
        return done.data.decode('utf-8', 'replace').splitlines()


EXCEPTION_LINE = re.compile(r'^\[?(?P<line>[A-Za-z_][\w.]*(Error|Exception|Exit): .*?)\]?$')


def why_from_logs(log_files):
    """The most telling lines of the logs' current runs: gunicorn's `Error:` line and the exception
    that caused it (a traceback's last line, bare or in brackets), or gunicorn's `Reason:`.
    -> (one-line why or None, evidence lines)."""
    evidence, errors, exceptions = [], [], []
    for path in log_files:
        lines = gunicorn.current_run(logfile.tail_lines(path, TAIL_BYTES))
        for line in lines:
            text = line.strip()
            m = EXCEPTION_LINE.match(text)
            if text.startswith('Error:'):
                errors.append(text[:300])
            elif m:
                exceptions.append(m.group('line')[:300])
            elif 'Reason:' in text:
                errors.append(text[text.index('Reason:'):][:300])
            else:
                continue
            evidence.append('%s: %s' % (path, text[:300]))
    parts = ([errors[-1]] if errors else []) + ([exceptions[-1]] if exceptions else [])
    seen, unique = set(), []
    for e in evidence:
        if e not in seen:
            seen.add(e)
            unique.append(e)
    return (' '.join(parts) if parts else None), unique[-8:]


def _listen_address(psutil, pid, port):
    try:
        proc = psutil.Process(pid)
        conns = getattr(proc, 'net_connections', getattr(proc, 'connections', None))(kind='tcp')
    except Exception:  # gone
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr[1] == port:
            return '%s:%d' % (conn.laddr[0], conn.laddr[1])
    return None


def _socket_address(pid, path):
    """'unix:PATH' when the master `pid` holds a socket that accepts on `path` (behind a front door), else None."""
    read = safe_read.read_text(listen.UNIX_TABLE, listen.UNIX_TABLE_MAX)
    inodes = listen.unix_listeners(read.data or '').get(path, set())
    return 'unix:%s' % path if inodes & listen.socket_inodes(pid) else None


def _address(psutil, pid, p):
    """Where the master serves: its unix socket (p['socket']) or loopback port (p['backend_port']) behind the proxy
    on the port, else the port."""
    if p.get('socket'):
        return _socket_address(pid, p['socket'])
    return _listen_address(psutil, pid, p.get('backend_port') or p['port'])


def sample(p):
    """One GET of the health path on the port; behind a proxy, on the app's socket or port too: the failing answer
    when one fails. Longer on a loaded host (cpu_load): a service that answers late there is not a failed restart."""
    timeout = healthz.TIMEOUT * cpu_load.scale()[0]
    s = healthz.sample(p['port'], p['healthz_path'], timeout=timeout)
    if s['status'] != 200 or not (p.get('socket') or p.get('backend_port')):
        return s
    if p.get('backend_port'):
        return healthz.sample(p['backend_port'], p['healthz_path'], timeout=timeout)
    return healthz.sample(None, p['healthz_path'], timeout=timeout, unix=p['socket'])


def _backend(p):
    """The app's own address behind the front door ('unix:PATH', '127.0.0.1:N'), or None."""
    if p.get('socket'):
        return 'unix:%s' % p['socket']
    return '127.0.0.1:%d' % p['backend_port'] if p.get('backend_port') else None


def _where(p):
    return '%d (through the front door) and on %s' % (p['port'], _backend(p)) if _backend(p) else '%d' % p['port']


def _workers(psutil, pid):
    try:
        return set(c.pid for c in psutil.Process(pid).children() if processes.alive(psutil, c))
    except Exception:  # gone
        return None


def wait_ready(psutil, p, exclude, deadline, logs):
    """Until `deadline`: one master of the app LISTENs on the port with all its workers booted and
    /healthz answers 200. -> (master dict, listen address, first 200 sample). Raises Unstable."""
    last = 'nothing seen yet'
    seen_master = False
    no_master_since = time.time()
    while True:
        masters = process.collect(psutil, p['app'], p['chdir'], exclude)['masters']
        listening = [(m, _address(psutil, m['pid'], p)) for m in masters]
        listening = [(m, a) for m, a in listening if a]
        if masters:
            seen_master = True
            no_master_since = None
        elif no_master_since is None:
            no_master_since = time.time()
        if not masters and time.time() - no_master_since >= GIVE_UP_AFTER:
            # Nothing runs for a while: did gunicorn give up (the log's current run says so)?
            for path in logs:
                run = gunicorn.scan_log(gunicorn.current_run(logfile.tail_lines(path, TAIL_BYTES)))
                gave_up = [e for e in run['events'] if e['event'] in GAVE_UP_EVENTS]
                if gave_up or run['tracebacks']:
                    raise Unstable('no master of the app runs: gunicorn gave up', kind='boot_failed')
        if len(masters) > 1:
            last = '%d masters of the app run (%s): two runners' % (len(masters), ', '.join(str(m['pid']) for m in masters))
        elif not masters:
            last = 'no gunicorn master of the app runs' + (' any more (it exited)' if seen_master else '')
        elif not listening:
            elsewhere = list(masters[0]['settings']['bind'])
            last = 'master %d does not listen on %s (its bind: %s)' % (
                masters[0]['pid'], _backend(p) or p['port'], ', '.join(elsewhere))
        else:
            master, address = listening[0]
            workers = _workers(psutil, master['pid']) or set()
            wanted = master['settings'].get('workers') or 1
            if len(workers) < wanted:
                last = 'master %d has %d of %d workers' % (master['pid'], len(workers), wanted)
            else:
                s = sample(p)
                if s['status'] == 200:
                    if p.get('worker_class') and master['settings']['worker_class'] != p['worker_class']:
                        raise Unstable('master %d runs -k %s, not -k %s' % (
                            master['pid'], master['settings']['worker_class'], p['worker_class']), kind='wrong_worker')
                    return master, address, s
                last = 'GET %s on %s: %s' % (p['healthz_path'], _where(p), s['status'] or s['error'])
        if time.time() >= deadline:
            raise Unstable(last, kind='not_ready')
        time.sleep(POLL)


def watch(psutil, p, exclude=()):
    """The whole check. -> dict(master, workers, listen, worker_class, ready_after, window, samples, elapsed).
    Raises Unstable with the reason and the log's evidence."""
    started = time.time()
    deadline = started + p['timeout']
    logs = [f for f in p['log_files'] if f]
    try:
        master, address, first = wait_ready(psutil, p, exclude, deadline, logs)
    except Unstable as e:
        why, evidence = why_from_logs(logs)
        if why and e.kind != 'wrong_worker':
            e.why = '%s; the log says: %s' % (e.why, why)
        e.evidence = evidence
        raise
    ready_after = round(time.time() - started, 2)
    pid = master['pid']
    workers = _workers(psutil, pid)
    window_tails = [LogTail(f) for f in logs]
    samples = [first]
    window_end = time.time() + p['window']
    next_sample = time.time() + HEALTHZ_EVERY
    try:
        while time.time() < window_end:
            time.sleep(POLL)
            now_workers = _workers(psutil, pid)
            if now_workers is None or not processes.alive(psutil, psutil.Process(pid)):
                raise Unstable('master %d exited during the %g s window' % (pid, p['window']))
            if now_workers != workers:
                raise Unstable('worker restart during the window: workers %s became %s' % (
                    sorted(workers), sorted(now_workers)))
            for tail in window_tails:
                for line in tail.read():
                    event = gunicorn.parse_log_line(line)
                    if event and event['event'] in UNSTABLE_EVENTS:
                        raise Unstable('%s logged during the window: %s' % (event['event'], line.strip()[:300]))
            if time.time() >= next_sample:
                s = sample(p)
                samples.append(s)
                next_sample = time.time() + HEALTHZ_EVERY
                if s['status'] != 200:
                    raise Unstable('GET %s answered %s during the window after a 200' % (
                        p['healthz_path'], s['status'] or s['error']))
    except Unstable as e:
        e.evidence = why_from_logs(logs)[1]
        raise
    except Exception as e:  # psutil.NoSuchProcess from Process(pid): the master is gone
        raise Unstable('master %d vanished during the window (%s)' % (pid, e.__class__.__name__), why_from_logs(logs)[1])
    return {
        'master': pid,
        'workers': sorted(workers or []),
        'listen': address,
        'worker_class': master['settings']['worker_class'],
        'cmdline': master['cmdline'],
        'ready_after': ready_after,
        'window': p['window'],
        'samples': len(samples),
        'slowest_ms': max(s['latency_ms'] for s in samples),
        'elapsed': round(time.time() - started, 2),
    }
