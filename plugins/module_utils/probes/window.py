# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stability window: /healthz sampled (healthz.Sampler) while the app's gunicorn processes and the lines its log
gains are watched, until the youngest process is old enough, or sooner when the evidence is conclusive.

A restart that is fast enough to keep /healthz green is still a restart: a master that exits or is replaced, a
worker that is killed and booted again, a new "Handling signal: term" or "WORKER TIMEOUT" line. Each change is kept
with the second of the window it was seen at. Read-only: the process table through psutil, the log through
safe_read, at most LOG_READ_MAX new bytes a look.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import safe_read
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.processes import alive
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn, restart_history, service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import app_runner, heartbeat, logfile, process

LOOK_INTERVAL = 0.25       # how often the process table and the log are looked at
SETTLE = 3.0               # after conclusive evidence: the most the rest of it may take (the exit, the replacement, the re-boot)
EXEC_GRACE = 2.0           # a process younger than this may still exec gunicorn: looked at again
LOG_READ_MAX = 256 << 10   # new log bytes read per look; more than that and only the newest are read
LINE_MAX = 8 << 10         # a log line longer than this is cut
EVENTS_KEPT = 60
# Log events worth keeping, and those that end the window: the service is not stable, whatever HTTP says.
WATCHED = ('starting', 'listening', 'worker_boot', 'signal_term', 'master_shutdown', 'worker_timeout',
           'worker_sigkill', 'worker_exit', 'worker_failed_boot', 'app_failed_load', 'worker_exception', 'bind_retry')
CONCLUSIVE = ('signal_term', 'master_shutdown', 'worker_timeout', 'worker_sigkill', 'worker_failed_boot',
              'app_failed_load', 'worker_exception')


class ProcessWatch(object):
    """The app's gunicorn masters and workers, looked at again and again: which exited, which started, when."""

    def __init__(self, psutil, app, chdir, exclude, masters, started, table=()):
        """`table`: the probe's process table (process.scan()): what it showed as no gunicorn, old enough not to
        exec one any more, is not looked at again."""
        self.psutil, self.app, self.chdir, self.exclude = psutil, app, chdir, set(exclude)   # PID 1 too: a container's gunicorn
        self.started = started
        self.known = {}     # (pid, create_time) -> {'pid', 'ppid'} of the app's gunicorn processes
        self.roles = {}     # pid -> ('master', None) or ('worker', master pid), as first seen
        self.others = set()  # (pid, create_time) of processes that are surely not the app's gunicorns
        self.changes = []
        self.booting = {}    # worker pid -> {pid, master, seconds, at}: still booting (probes/heartbeat.py)
        self.serving = set()  # (pid, create_time) of workers seen out of their boot
        for m in masters:
            self._remember((m['pid'], m['create_time']), m['pid'], m['ppid'], ('master', None))
            for w in m['workers']:
                self._remember((w['pid'], w['create_time']), w['pid'], m['pid'], ('worker', m['pid']))
        self.others.update((i['pid'], i['create_time']) for dummy, i in table if started - i['create_time'] > EXEC_GRACE
                           and not gunicorn.is_gunicorn_cmdline(i['cmdline']))

    def _remember(self, key, pid, ppid, role):
        self.known[key] = {'pid': pid, 'ppid': ppid}
        self.roles.setdefault(pid, role)

    def _scan(self):
        """-> {(pid, create_time): {'pid', 'ppid'}} of the app's gunicorn processes now."""
        found = {}
        for proc in self.psutil.process_iter():
            try:
                key = (proc.pid, proc.create_time())
            except Exception:  # gone meanwhile
                continue
            if key in self.others or proc.pid in self.exclude:
                continue
            if key in self.known:
                if alive(self.psutil, proc):   # a zombie has exited: it only waits to be reaped
                    found[key] = self.known[key]
                continue
            info = process._info(proc, whole=False)   # its cwd only when its command line is a gunicorn
            if info is not None and info['cmdline'] and gunicorn.is_gunicorn_cmdline(info['cmdline']) and \
                    process.belongs_to_app(process._complete(proc, info), self.app, self.chdir) and \
                    not _doctor_run(info['pid']):
                found[key] = {'pid': info['pid'], 'ppid': info['ppid']}
            elif time.time() - key[1] > EXEC_GRACE:
                self.others.add(key)
        return found

    def look(self):
        """Compare the table with the last look; each change goes to `changes` with its time in the window."""
        now = self._scan()
        at = round(time.time() - self.started, 1)
        pids = set(v['pid'] for v in now.values())
        for key in sorted(set(self.known) - set(now), key=lambda k: k[0]):
            role, master = self.roles.get(key[0], ('worker', None))
            self.changes.append({'at': at, 'what': 'exited', 'role': role, 'pid': key[0], 'master': master})
        for key in sorted(set(now) - set(self.known), key=lambda k: k[0]):
            ppid = now[key]['ppid']
            role = ('worker', ppid) if ppid in pids else ('master', None)
            self.roles[key[0]] = role
            self.changes.append({'at': at, 'what': 'started', 'role': role[0], 'pid': key[0], 'master': role[1]})
        self.known = now
        self._look_at_boots(at)

    def _look_at_boots(self, at):
        """Which workers of the app are still booting, and for how long (a worker that served once is not read again)."""
        for key in self.known:
            role, master = self.roles.get(key[0], ('', None))
            if role != 'worker' or key in self.serving:
                continue
            seconds = heartbeat.booting_for(key[0], key[1])
            if seconds is None:
                self.serving.add(key)
                self.booting.pop(key[0], None)
            else:
                self.booting[key[0]] = {'pid': key[0], 'master': master, 'seconds': seconds, 'at': at}
        for pid in set(self.booting) - set(k[0] for k in self.known):
            del self.booting[pid]   # gone: what it showed stays in `changes`

    def none_serving(self):
        """Every worker of the app is still booting (so nothing can answer /healthz yet)."""
        workers = [k for k in self.known if self.roles.get(k[0], ('',))[0] == 'worker']
        return bool(workers) and all(k[0] in self.booting for k in workers)

    def masters_alive(self):
        return set(v['pid'] for v in self.known.values() if self.roles.get(v['pid'], ('',))[0] == 'master')


def _doctor_run(pid):
    """A gunicorn the doctor itself started (the spare-port boot): marked by app_runner's token."""
    return app_runner.TOKEN in (service_env.read_proc_environ(pid) or {})


class LogWatch(object):
    """The lines the log gains during the window, read as they come (at most LOG_READ_MAX bytes a look). `earlier`: the
    events of the log read before the window (probes/logfile, with their epochs): with the new ones, the masters'
    generations now (restart_history)."""

    def __init__(self, path, offset, started, earlier=()):
        self.path, self.offset, self.started = path, offset or 0, started
        self.earlier = list(earlier)
        self.partial = b''
        self.events = []
        self.read_bytes = 0

    def look(self):
        if not self.path:
            return
        done = safe_read.read_bytes(self.path, LOG_READ_MAX, tail=True, follow=True, start=self.offset)
        if done.data is not None and done.size < self.offset:   # rotated or truncated: its new lines start at 0
            self.offset, self.partial = 0, b''
            done = safe_read.read_bytes(self.path, LOG_READ_MAX, tail=True, follow=True)
        if done.data is None:
            return
        skipped = done.size - self.offset > LOG_READ_MAX   # only the newest bytes were read: from a whole line
        begin = done.size - LOG_READ_MAX if skipped else self.offset
        self.offset = begin + len(done.data)
        self.read_bytes += len(done.data)
        lines = (done.data.split(b'\n', 1)[-1] if skipped else self.partial + done.data).split(b'\n')
        self.partial = lines.pop()[-LINE_MAX:]
        at = round(time.time() - self.started, 1)
        for raw in lines:
            event = gunicorn.parse_log_line(raw[:LINE_MAX].decode('utf-8', 'replace'))
            if event is not None and event['event'] in WATCHED:
                event['at'], event['epoch'] = at, logfile.parse_time(event.get('time'))
                self.events.append(event)
        del self.events[:-EVENTS_KEPT]

    def grew(self):
        return self.read_bytes > 0

    def generations(self):
        return restart_history.generations(self.earlier + self.events)


class Window(object):
    """One stability window: run() -> the healthz facts with `watch`, what the processes and the log did.

    `history`: why the log read before the window already shows the current run unstable (restart_history.unsettled),
    or None: then the window need not wait for more of the same. `boot_limit`: the service's worker timeout; a worker
    still booting after that long is a slow boot, whatever comes later. `at_once`: why the evidence read before the
    window is conclusive whatever the window shows (eventlet_probe.hub_crash): the first sample is all it takes."""

    def __init__(self, sampler, processes, log, history=None, boot_limit=None, at_once=None):
        self.sampler, self.processes, self.log = sampler, processes, log
        self.history, self.boot_limit, self.at_once = history, boot_limit, at_once
        self.sampled = threading.Event()
        self.pause = threading.Event()   # never set: the interval between looks once the sampling is over
        self.ended = None
        self.kept_watching = None   # the restart underway the window waited for (restart_history.restart_underway)

    def _sample(self):
        try:
            self.sampler.run(self.processes.started)
        finally:
            self.sampled.set()

    def run(self):
        thread = threading.Thread(target=self._sample, name='healthz')
        thread.daemon = True   # a sample still waiting for its answer when the window ends is left behind
        thread.start()
        settle_until, done = None, False
        while True:
            self.processes.look()   # at once, then every LOOK_INTERVAL: evidence already there ends it soonest
            self.log.look()
            now = time.time()
            if settle_until is None and (self.sampler.failed or self.conclusive()):
                settle_until = now + SETTLE
                self.ended = self.conclusive() or 'healthz'
            if settle_until is not None and (now >= settle_until or self.at_once or not self.pending()) and \
                    self._first_answered():
                break   # (a first sample still waiting for its answer is waited for: it is bounded by its timeout)
            if done and settle_until is None:
                if not self.underway():
                    break
                settle_until = now + SETTLE   # the sampling ended halfway through a restart: its end is awaited, briefly
            if done:   # the sampling is over and the rest of the evidence is awaited: a look every LOOK_INTERVAL
                self.pause.wait(LOOK_INTERVAL)
            else:
                done = self.sampled.wait(LOOK_INTERVAL)
        if self.ended == 'at_once':
            self.sampler.one_sample_suffices(self.at_once)
        self.sampler.stop.set()
        facts = self.sampler.facts()
        facts['watch'] = self.facts()
        return facts

    def _first_answered(self):
        """The first sample is in; or nothing could answer it (every worker still booting past the limit): then it is
        recorded as unanswered so far instead of waiting out its timeout."""
        if self.sampler.first.is_set():
            return True
        if self.ended == 'boot' and self.processes.none_serving():
            self.sampler.give_up_first('every worker of the app is still booting')
        return self.sampler.first.is_set()

    def slow_boots(self):
        """Workers booting for longer than the service's worker timeout."""
        return [b for b in self.processes.booting.values() if self.boot_limit and b['seconds'] > self.boot_limit]

    def conclusive(self):
        """What makes the window's verdict certain ('at_once', 'process', 'log', 'boot' or 'history'), or None."""
        if self.at_once:
            return 'at_once'
        if any(c['what'] == 'exited' for c in self.processes.changes):
            return 'process'
        if any(e['event'] in CONCLUSIVE for e in self.log.events):
            return 'log'
        if self.slow_boots():
            return 'boot'
        return 'history' if self.history else None

    def pending(self):
        """Whether the rest of the evidence may still come: more masters exited than started and none runs on (a
        replacement may follow), a master that handled TERM still runs, a worker of a master that runs on exited and no
        new one has booted yet, or /healthz failed and nothing else has shown why yet."""
        changes = self.processes.changes

        def count(role, what, master=None):
            return len([c for c in changes if c['role'] == role and c['what'] == what and
                        (master is None or c['master'] == master)])
        alive = self.processes.masters_alive()
        gone = set(c['pid'] for c in changes if c['role'] == 'master' and c['what'] == 'exited')
        if count('master', 'exited') > count('master', 'started') and not alive - gone:
            return True
        if any(count('worker', 'exited', m) > count('worker', 'started', m) for m in alive):
            return True
        if any(e['event'] == 'signal_term' and e['pid'] in alive for e in self.log.events):
            return True
        killed = [e for e in self.log.events if e['event'] in ('worker_timeout', 'worker_sigkill')]
        if len(killed) > len([c for c in changes if c['what'] == 'started' and c['role'] == 'worker']):
            return True
        underway = self.underway()
        if underway:
            self.kept_watching = underway
            return True
        return self.sampler.failed and not changes and not self.log.events

    def underway(self):
        """The restart the log shows half done now (a running master stopping after SIGTERM, or one not listening
        yet): the window keeps watching rather than judge a half-restarted service (restart_history.restart_underway)."""
        return restart_history.restart_underway(self.log.generations(), self.processes.masters_alive(), time.time())

    def facts(self):
        return {
            'changes': list(self.processes.changes),
            'log_events': [dict((k, e[k]) for k in ('at', 'event', 'pid', 'worker', 'line') if k in e)
                           for e in self.log.events],
            'log_bytes_read': self.log.read_bytes,
            'booting': sorted(self.processes.booting.values(), key=lambda b: b['pid']),
            'boot_limit': self.boot_limit,
            'slow_boots': self.slow_boots(),
            'history': self.history,
            'at_once': self.at_once,
            'ended_by': self.ended,   # None: the window ran its course
            'restart_underway': self.kept_watching,
            'seconds': round(time.time() - self.processes.started, 2),
        }
