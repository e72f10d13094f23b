# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service manager a host has, and starting / stopping / restarting the app's service in it:
systemd (when it is PID 1), supervisord (through supervisorctl), or a standalone pidfile runner
(`gunicorn --daemon --pid FILE` started by a small script).

Everything is addressed by PID or by the manager's own name for the service; the master is proven
to be the app's (`probes.process.belongs_to_app`) before it is signalled.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import processes, safe_read, service_user
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import stability
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import process, restart_runner

POLL = 0.05


class ServiceError(Exception):
    """The service could not be brought to the wanted state; the message says why and what to do."""


# --- which manager ---------------------------------------------------------------------------------
def systemd_booted():
    """systemd's own test (sd_booted): it runs as the init system."""
    return os.path.isdir('/run/systemd/system')


def running_supervisords(psutil):
    """Running supervisord daemons -> [dict(pid, conf, supervisorctl, uid, exe, script)]."""
    found = []
    for proc in psutil.process_iter():
        try:
            argv = proc.cmdline()
            cwd = proc.cwd()
            uid, exe = proc.uids().real, proc.exe()
        except Exception:  # gone or not ours to read
            continue
        scripts = [a for a in argv[:2] if os.path.basename(a) == 'supervisord']
        if not scripts:
            continue
        conf = restart_runner.supervisord_conf_path(argv, cwd)
        script = scripts[0] if os.path.isabs(scripts[0]) else shutil.which(scripts[0]) or scripts[0]
        sibling = os.path.join(os.path.dirname(script), 'supervisorctl')
        ctl = sibling if os.access(sibling, os.X_OK) else shutil.which('supervisorctl')
        found.append({'pid': proc.pid, 'conf': conf, 'supervisorctl': ctl, 'uid': uid, 'exe': exe, 'script': script})
    return found


def supervisord_problems(info, program_dir=None):
    """Why root must not write programs for this supervisord (`detect`'s result) or run its supervisorctl: it
    does not run as root (or as us), or another user can change its binary, its config, the directory programs
    go into or supervisorctl - a program written there would run as whatever that user makes it. -> [reason]."""
    problems = []
    uid = info.get('supervisord_uid')
    if uid is not None and uid not in (0, os.geteuid()):
        problems.append('supervisord (pid %s) runs as %s, not root' % (info['supervisord_pid'], service_user.user_name(uid)))
    files = [('its binary', info.get('supervisord_exe')), ('its script', info.get('supervisord_script')),
             ('its config', info.get('supervisord_conf')), ('its program directory', program_dir or info.get('supervisord_conf_dir')),
             ('supervisorctl', info.get('supervisorctl'))]
    for what, path in files:
        reason = service_user.unsafe_reason(path) if path else None
        if reason:
            problems.append('%s: %s' % (what, reason))
    return problems


def supervisord_include_dir(conf_path):
    """The directory of the first `[include] files=` glob of a supervisord config, or None."""
    globs = restart_runner.supervisord_include_globs(conf_path) if conf_path else []
    return os.path.dirname(globs[0]) if globs else None


MAX_PROGRAM_FILES = 256   # [include] files read per supervisord config
MAX_CONF_BYTES = 1 << 20


def config_sections(text):
    """A supervisord config's text -> [(section, {key: value})] (ini-like, `;` comments, no interpolation)."""
    found = []
    for raw in (text or '').splitlines():
        line = raw.strip()
        if not line or line[0] in ';#':
            continue
        if line.startswith('[') and line.endswith(']'):
            found.append((line[1:-1].strip(), {}))
        elif found and '=' in line:
            key, value = line.split('=', 1)
            found[-1][1][key.strip()] = value.strip()
    return found


def supervisord_programs(conf_path):
    """The programs of a supervisord config and its [include] files (bounded reads, at most MAX_PROGRAM_FILES
    files) -> [dict(name, command, directory, file)]."""
    text = safe_read.read_text(conf_path, MAX_CONF_BYTES, follow=True).data if conf_path else None
    files = [(conf_path, text)]
    for section, values in config_sections(text):
        if section == 'include' and values.get('files'):
            for pattern in values['files'].split():
                pattern = pattern if os.path.isabs(pattern) else os.path.join(os.path.dirname(conf_path), pattern)
                for path in sorted(glob.glob(pattern))[:MAX_PROGRAM_FILES]:
                    files.append((path, safe_read.read_text(path, MAX_CONF_BYTES, follow=True).data))
    programs = []
    for path, body in files[:MAX_PROGRAM_FILES + 1]:
        for section, values in config_sections(body):
            if section.startswith('program:'):
                programs.append({'name': section.split(':', 1)[1], 'command': values.get('command', ''),
                                 'directory': values.get('directory'), 'file': path})
    return programs


def program_runs_app(program, app, chdir):
    """A supervisord program runs this app in this directory: its `directory=` is the app directory (or its
    command names it) and its command - or the script it runs, read bounded - names the app spec."""
    where = program.get('directory') or ''
    command = program.get('command') or ''
    real = os.path.realpath(chdir)
    if not (where and os.path.realpath(where) == real) and real not in command and chdir not in command:
        return False
    if app in command:
        return True
    first = command.split()[0].strip('\'"') if command.split() else ''
    if first and not os.path.isabs(first) and where:
        first = os.path.join(where, first)
    script = safe_read.read_text(first, 64 << 10, follow=True).data if first else None
    return bool(script) and app in script


def choose_supervisord(sups, app, chdir, runner_pid=None):
    """Which running supervisord is the app's -> (sup or None, error or None). The one that runs the app now;
    else the one with a program that runs this app in this directory; else the only one that runs. Several
    and none provably the app's: none, and an error that says what to set - a program written into another
    app's supervisord would run beside (and be managed with) that app."""
    if not sups:
        return None, None
    now = next((s for s in sups if runner_pid and s['pid'] == runner_pid), None)
    if now:
        return now, None
    if app and chdir:
        owning = [s for s in sups if any(program_runs_app(prog, app, chdir) for prog in supervisord_programs(s['conf']))]
        if len(owning) == 1:
            return owning[0], None
    else:
        owning = []
    if len(sups) == 1:
        return sups[0], None
    which = ', '.join('pid %s (%s)' % (s['pid'], s['conf'] or 'no config found') for s in (owning or sups))
    return None, ('%d supervisords run (%s) and %s: set doctor_supervisord_conf (gunicorn_service_supervisord_conf) '
                  'to the config of the one that should run %s, or doctor_service_manager=standalone' % (
                      len(sups), which, 'each has a program of %s in %s' % (app, chdir) if owning else
                      'none has a program that runs %s in %s' % (app, chdir), app))


def detect(psutil, requested, current_runner=None, supervisorctl=None, supervisord_conf=None, app=None, chdir=None):
    """Resolve `auto` to the manager the host has. -> dict(manager, why, supervisorctl, supervisord_conf,
    supervisord_conf_dir, systemd_booted).

    Order: the runner that runs the app now, when it is one of the three; else systemd when it is the
    init system; else a running supervisord whose config includes a directory (see choose_supervisord);
    else standalone. Raises ServiceError when supervisord would be the manager but several run and none
    is provably the app's.
    """
    booted = systemd_booted()
    sups = running_supervisords(psutil)
    sup, ambiguous = None, None
    if supervisord_conf:
        sup = next((s for s in sups if s['conf'] and os.path.realpath(s['conf']) == os.path.realpath(supervisord_conf)),
                   {'pid': None, 'conf': supervisord_conf, 'supervisorctl': None})
    else:
        runner_pid = (current_runner or {}).get('pid') if (current_runner or {}).get('kind') == 'supervisord' else None
        sup, ambiguous = choose_supervisord(sups, app, chdir, runner_pid)
    info = {
        'systemd_booted': booted,
        'supervisord_pid': sup['pid'] if sup else None,
        'supervisord_conf': sup['conf'] if sup else None,
        'supervisorctl': supervisorctl or (sup or {}).get('supervisorctl') or shutil.which('supervisorctl'),
        'supervisord_conf_dir': supervisord_include_dir(sup['conf']) if sup and sup['conf'] else None,
        'supervisord_uid': (sup or {}).get('uid'),
        'supervisord_exe': (sup or {}).get('exe'),
        'supervisord_script': (sup or {}).get('script'),
    }
    if ambiguous and (requested == 'supervisord' or (requested == 'auto' and not booted)):
        raise ServiceError(ambiguous)
    if requested != 'auto':
        return dict(info, manager=requested, why='doctor_service_manager=%s' % requested)
    kind = (current_runner or {}).get('kind')
    if kind == 'supervisord' and info['supervisord_pid'] and info['supervisord_conf_dir']:
        return dict(info, manager='supervisord', why='supervisord (pid %s) runs the app now' % info['supervisord_pid'])
    if kind == 'systemd' and booted:
        return dict(info, manager='systemd', why='systemd runs the app now')
    if booted:
        return dict(info, manager='systemd', why='systemd is the init system')
    if info['supervisord_pid'] and info['supervisord_conf_dir']:
        return dict(info, manager='supervisord', why='supervisord (pid %s, %s) runs and includes %s' % (
            info['supervisord_pid'], info['supervisord_conf'], info['supervisord_conf_dir']))
    return dict(info, manager='standalone', why='no systemd as init and no supervisord running: a pidfile runner '
                '(gunicorn --daemon --pid FILE)')


# --- the master of the service ---------------------------------------------------------------------
def app_master(psutil, pid, app, chdir):
    """`pid` when it is a live gunicorn master of this app (not a zombie, not a recycled pid), else None."""
    if not pid:
        return None
    try:
        proc = psutil.Process(int(pid))
        info = {'cmdline': proc.cmdline(), 'cwd': proc.cwd()}
    except Exception:  # gone, or not ours to read
        return None
    if not processes.alive(psutil, proc) or not gunicorn.is_gunicorn_cmdline(info['cmdline']):
        return None
    return int(pid) if process.belongs_to_app(info, app, chdir) else None


def read_pidfile(path):
    # Written by gunicorn into the service directory: a symlink there is not expected, and not followed.
    text = (safe_read.read_text(path, 64).data or '').strip()
    return int(text) if text.isdigit() else None


def stop_pid(psutil, pid, grace, prove=None):
    """TERM a master, wait (zombie-aware) for it and its workers, KILL what is left. -> signals sent.

    The master is named by its PID and the start time read here; `prove(pid)` (the caller's proof that
    it is the app's master, e.g. app_master) is checked after that, so proof and signals concern one
    process. Every signal goes through processes.signal_proc: a PID reused meanwhile is never hit.
    """
    try:
        master = psutil.Process(pid)
        procs = [master] + master.children(recursive=True)
    except Exception:  # already gone
        return []
    if (prove is not None and prove(pid) != pid) or not processes.alive(psutil, master):
        return []  # no longer the app's master, or gone
    if not processes.in_our_namespaces(pid):
        return []  # a container's process is never ours to stop
    if not processes.signal_proc(psutil, master, signal.SIGTERM):
        return []  # exited meanwhile
    sent = ['TERM']
    left = processes.wait_gone(psutil, procs, grace)
    for proc in left:
        if processes.signal_proc(psutil, proc, signal.SIGKILL) and 'KILL' not in sent:
            sent.append('KILL')
    processes.wait_gone(psutil, left, 5.0)
    return sent


class Service(object):
    """One service in one manager. `status()` -> dict(running, pid, state, detail)."""

    def __init__(self, psutil, params, run_command):
        self.psutil = psutil
        self.p = params
        self.run_command = run_command  # AnsibleModule.run_command: argv list -> (rc, out, err)
        self._offsets = {}

    # -- common
    def master(self, pid):
        return app_master(self.psutil, pid, self.p['app'], self.p['chdir'])

    def status(self):
        return getattr(self, '_status_' + self.p['manager'])()

    def start(self):
        self.mark_console()
        return getattr(self, '_start_' + self.p['manager'])()

    def stop(self):
        return getattr(self, '_stop_' + self.p['manager'])()

    def _logs(self):
        return [f for f in [self.p.get('console_log')] + list(self.p.get('log_files') or []) if f]

    def console(self):
        """What the runner's console and the service's logs got since the start (gunicorn prints a failed
        worker class import or a bad option there before or after its logger takes over stderr)."""
        text = [safe_read.read_text(path, 64 << 10, follow=True, start=self._offsets.get(path, 0)).data
                for path in self._logs()]
        return '\n'.join(t for t in text if t)

    def mark_console(self):
        self._offsets = {}
        for path in self._logs():
            try:
                self._offsets[path] = os.path.getsize(path)
            except OSError:
                self._offsets[path] = 0

    def failure(self, headline):
        """A ServiceError naming the cause the logs give (the exception, an `Error:` line)."""
        why, evidence = stability.why_from_logs(self._logs())
        text = self.console().strip()
        tail = ' | '.join(text.splitlines()[-4:]) if text and not why else ''
        return ServiceError('%s%s%s' % (headline, '; the log says: %s' % why if why else '',
                                        '; output: %s' % tail if tail else ''))

    def wait_master(self, timeout, old_pid=None):
        """Wait for the manager to report a live master of the app (a new one when old_pid is given);
        give up early when the logs show an error and no master comes."""
        deadline = time.time() + timeout
        error_seen = None
        while True:
            st = self.status()
            if st['running'] and st['pid'] != old_pid:
                return st
            text = self.console()
            if error_seen is None and ('Error' in text or 'Traceback' in text):
                error_seen = time.time()
            if error_seen is not None and time.time() - error_seen > 1.0 or time.time() >= deadline:
                raise self.failure('no master of %s %s after the start (%s)' % (
                    self.p['name'], 'came' if error_seen else 'within %g s' % timeout, st.get('detail') or st.get('state')))
            time.sleep(POLL * 2)

    # -- standalone: gunicorn --daemon --pid FILE, started by a script
    def _status_standalone(self):
        pid = read_pidfile(self.p['pidfile'])
        master = self.master(pid)
        if master:
            return {'running': True, 'pid': master, 'state': 'RUNNING', 'detail': 'pidfile %s' % self.p['pidfile']}
        detail = 'no pidfile %s' % self.p['pidfile'] if pid is None else \
            'pidfile %s names %d, which is not a live master of the app' % (self.p['pidfile'], pid)
        return {'running': False, 'pid': None, 'state': 'STOPPED', 'detail': detail}

    def _start_standalone(self):
        script = self.p['start_script']
        if not os.access(script, os.X_OK):
            raise ServiceError('start script %s is missing or not executable' % script)
        with tempfile.TemporaryFile() as out:
            try:
                done = subprocess.run([script], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True, timeout=self.p['start_timeout'], check=False)
            except subprocess.TimeoutExpired:
                raise ServiceError('%s did not return within %g s (gunicorn --daemon returns at once)' % (
                    script, self.p['start_timeout']))
            out.seek(max(0, out.seek(0, os.SEEK_END) - (64 << 10)))   # its last words: a chatty script stays small
            output = out.read().decode('utf-8', 'replace').strip()
        if done.returncode != 0:
            raise self.failure('%s exited with %d: %s' % (script, done.returncode, output[-2000:] or 'no output'))
        return self.wait_master(self.p['start_timeout'])

    def _stop_standalone(self):
        st = self._status_standalone()
        if not st['running']:
            return []
        return stop_pid(self.psutil, st['pid'], self.p['grace'], prove=self.master)

    # -- supervisord
    def ctl(self, *args):
        argv = [self.p['supervisorctl']]
        if self.p.get('supervisord_conf'):
            argv += ['-c', self.p['supervisord_conf']]
        rc, out, err = self.run_command(argv + list(args))
        return rc, (out or '') + (err or '')

    def _status_supervisord(self):
        rc, out = self.ctl('status', self.p['name'])
        m = re.search(r'^%s\s+(?P<state>[A-Z]+)(\s+pid (?P<pid>\d+))?' % re.escape(self.p['name']), out, re.M)
        if not m:
            if 'refused' in out or 'no such file' in out.lower() or 'SHUTDOWN' in out:
                raise ServiceError('supervisorctl cannot reach supervisord: %s' % out.strip())
            return {'running': False, 'pid': None, 'state': 'UNKNOWN', 'detail': out.strip()}
        program_pid = int(m.group('pid')) if m.group('pid') else None
        pid = self._master_of_program(program_pid) if program_pid else None
        return {'running': m.group('state') == 'RUNNING' and pid is not None, 'pid': pid, 'state': m.group('state'),
                'detail': out.strip(), 'program_pid': program_pid}

    def _master_of_program(self, program_pid):
        """The app's master a program runs: its own process, or the master a script it runs started (a command
        that is a script running gunicorn without exec)."""
        found = self.master(program_pid)
        if found is not None:
            return found
        try:
            below = self.psutil.Process(program_pid).children(recursive=True)
        except Exception:  # gone
            return None
        return next((pid for pid in (self.master(proc.pid) for proc in below) if pid is not None), None)

    def _start_supervisord(self):
        self.ctl('reread')
        rc, out = self.ctl('update', self.p['name'])
        st = self._status_supervisord()
        if st['state'] != 'RUNNING':
            rc, out = self.ctl('start', self.p['name'])
            if 'ERROR' in out and 'already started' not in out:
                raise self.failure('supervisorctl start %s: %s' % (self.p['name'], out.strip()))
        return self.wait_master(self.p['start_timeout'])

    def _stop_supervisord(self):
        st = self._status_supervisord()
        if st['state'] in ('UNKNOWN', 'STOPPED', 'EXITED', 'FATAL'):
            return []
        family = []
        if st['program_pid']:
            try:
                program = self.psutil.Process(st['program_pid'])
                family = [program] + program.children(recursive=True)
            except Exception:  # already gone
                family = []
        rc, out = self.ctl('stop', self.p['name'])
        if rc != 0 and 'not running' not in out:
            raise ServiceError('supervisorctl stop %s: %s' % (self.p['name'], out.strip()))
        # supervisorctl returns when the master is gone; its workers must be gone too before the logs move.
        left = processes.wait_gone(self.psutil, family, self.p['grace'])
        return ['supervisorctl stop'] + self._stop_left_behind(left)

    def _stop_left_behind(self, left):
        """The program's processes its stop did not take down: a command that is a script running gunicorn without
        exec and no stopasgroup - supervisord signalled the shell only, and its gunicorn would hold $PORT against
        the next start. They were the program's own tree when it was stopped; each signal checks the start time."""
        left = [proc for proc in left if processes.in_our_namespaces(proc.pid)]
        sent = []
        for proc in left:
            if processes.signal_proc(self.psutil, proc, signal.SIGTERM) and 'TERM left behind' not in sent:
                sent.append('TERM left behind')
        for proc in processes.wait_gone(self.psutil, left, self.p['grace']):
            if processes.signal_proc(self.psutil, proc, signal.SIGKILL) and 'KILL left behind' not in sent:
                sent.append('KILL left behind')
        return sent

    # -- systemd
    def systemctl(self, *args):
        rc, out, err = self.run_command(['systemctl'] + list(args))
        return rc, (out or '') + (err or '')

    def _unit(self):
        return self.p['name'] + '.service'

    def _require_systemd(self):
        if not systemd_booted():
            raise ServiceError('systemd is not the init system on this host (no /run/systemd/system), so %s cannot be '
                               'started here; its unit is written and verified - use doctor_service_manager=supervisord '
                               'or standalone on this host' % self._unit())

    def _status_systemd(self):
        if not systemd_booted():
            return {'running': False, 'pid': None, 'state': 'NO_SYSTEMD', 'detail': 'systemd is not the init system'}
        rc, out = self.systemctl('show', '-p', 'MainPID', '-p', 'ActiveState', self._unit())
        values = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
        pid = self.master(values.get('MainPID'))
        return {'running': values.get('ActiveState') == 'active' and pid is not None, 'pid': pid,
                'state': values.get('ActiveState', 'unknown').upper(), 'detail': out.strip()}

    def _start_systemd(self):
        self._require_systemd()
        for args in (('daemon-reload',), ('enable', self._unit()), ('start', self._unit())):
            rc, out = self.systemctl(*args)
            if rc != 0:
                raise ServiceError('systemctl %s: %s' % (' '.join(args), out.strip()))
        return self.wait_master(self.p['start_timeout'])

    def _stop_systemd(self):
        self._require_systemd()
        rc, out = self.systemctl('stop', self._unit())
        if rc != 0:
            raise ServiceError('systemctl stop %s: %s' % (self._unit(), out.strip()))
        return ['systemctl stop']


def verify_unit(content, unit_name, run_command, dropins=None):
    """`systemd-analyze verify` a unit's text (and drop-ins) in a scratch directory. -> (ok, output)."""
    analyze = shutil.which('systemd-analyze')
    if not analyze:
        return None, 'systemd-analyze is not installed'
    scratch = tempfile.mkdtemp(prefix='gunicorn-doctor-unit.')
    try:
        path = os.path.join(scratch, unit_name)
        with open(path, 'w') as f:
            f.write(content)
        for name, text in (dropins or {}).items():
            os.makedirs(path + '.d', exist_ok=True)
            with open(os.path.join(path + '.d', name), 'w') as f:
                f.write(text)
        rc, out, err = run_command([analyze, 'verify', '--man=no', path])
        output = ((out or '') + (err or '')).replace(scratch + '/', '').strip()
        return rc == 0, output
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
