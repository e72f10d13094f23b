# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the app's own code (the dry import, the spare-port boot, its interpreter) confined.

Diagnosis runs as root on most hosts, and whoever can write the app's code or its venv decides what that code
does. So it runs with no more than the service has:
- as whom (service_identity): the running master's uid, gid and groups (its workers' when gunicorn --user drops
  them); else the User=/Group= of the systemd unit or the user= of the supervisord program that runs the app;
  else the owner of doctor_chdir. When that owner is root and nothing names another user, the app runs as root
  anyway, so root it is. A prober that is not root cannot switch users and runs it as itself.
- with what (child_env): the service's own environment (host_probe.service_environment) without what belongs to
  a login or to Ansible (SSH_*, SUDO_*, ANSIBLE_*, ...), plus PATH, LANG, USER, LOGNAME and a private HOME and
  TMPDIR: a fresh 0700 directory owned by that user, removed afterwards.
- for how long (AppRun): a new session, one wall-clock deadline, the whole session killed at the end (see
  AppRun.stop for what that reaches), the output drained with a bound on its size and on the time it may take.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import glob
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import service_user
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.processes import alive, wait_gone

try:
    import pwd
except ImportError:  # pragma: no cover - not a POSIX host
    pwd = None

DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'  # systemd's default for services
# What belongs to a login session or to the Ansible run, never to the service: not passed to app code.
NOT_PASSED = re.compile(r'^(SSH_.*|SUDO_.*|ANSIBLE_.*|XDG_.*|DBUS_SESSION_BUS_ADDRESS|KRB5CCNAME|GPG_AGENT_INFO|'
                        r'DISPLAY|XAUTHORITY|MAIL|PWD|OLDPWD|SHLVL|_|GUNICORN_CMD_ARGS)$')
TOKEN = 'SRE_GUNICORN_DOCTOR_RUN'  # marks the processes of one run, to find those that leave its session
MAX_LINE = 64 << 10
MAX_OUTPUT = 1 << 20
DRAIN_AFTER_STOP = 1.0  # seconds the output is still read after the stop (an escaped helper may hold the pipe)
POLL = 0.05


# --- as whom --------------------------------------------------------------------------------------------
def identity(uid, gid, groups, source, name=None):
    return {'name': name or _user_name(uid), 'uid': uid, 'gid': gid, 'groups': sorted(set(groups) | set([gid])),
            'source': source}


def describe(ident):
    """'www-data (uid 33) from the master 1234'"""
    return '%s (uid %d) %s' % (ident['name'], ident['uid'], ident['source'])


def service_identity(psutil, masters, runners, chdir):
    """Whom the app's code runs as (see the module doc); `runners` from find_runners."""
    found = _master_identity(psutil, masters)
    for runner in runners:
        if found is not None:
            break
        found = _named_identity(runner['user'], runner['group'], 'from %s of %s' % (runner['field'], runner['source']))
    if found is None:
        st = os.stat(chdir)
        source = 'from the owner of %s (no master runs, no runner names a user)' % chdir
        found = _named_identity(str(st.st_uid), None, source) or identity(st.st_uid, st.st_gid, [], source)
    if os.geteuid() in (0, found['uid']):
        return found
    return identity(os.geteuid(), os.getegid(), os.getgroups(), 'because the prober is not root and cannot switch '
                    'to %s (uid %d, %s)' % (found['name'], found['uid'], found['source']))


def prober_identity():
    return identity(os.geteuid(), os.getegid(), os.getgroups(), 'as the prober itself')


def _master_identity(psutil, masters):
    """The workers' ids when gunicorn --user gives them another user than the master's, else the master's."""
    for master in masters:
        own = _process_ids(psutil, master['pid'])
        worker = next((ids for ids in (_process_ids(psutil, w['pid']) for w in master.get('workers') or []) if ids),
                      None)
        if worker and own and worker[0] != own[0]:
            return identity(*worker, source='from the workers of master %d (gunicorn --user)' % master['pid'])
        if own:
            return identity(*own, source='from the master %d' % master['pid'])
    return None


def _process_ids(psutil, pid):
    """(uid, gid, supplementary groups) of a running process, or None."""
    try:
        proc = psutil.Process(pid)
        uid, gid = proc.uids().effective, proc.gids().effective
        with open('/proc/%d/status' % pid) as f:
            groups = [int(g) for line in f if line.startswith('Groups:') for g in line.split()[1:]]
        return uid, gid, groups
    except Exception:  # psutil.NoSuchProcess / AccessDenied, an unreadable status: gone or hidden
        return None


def _named_identity(user, group, source):
    """A user (name or number) and an optional group as the service manager would set them, or None when the
    user is unset or unknown here (service_user.account reads them, as stabilize does)."""
    if not user or pwd is None:
        return None
    try:
        acct = service_user.account(user, group)
        pwd.getpwuid(acct['uid'])   # a uid without a passwd entry has no groups to switch to
    except (ValueError, KeyError):
        return None
    return identity(acct['uid'], acct['gid'], os.getgrouplist(acct['user'], acct['gid']), source, name=acct['user'])


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except (AttributeError, KeyError):
        return str(uid)


def find_runners(app, chdir, unit_dirs=None, conf_globs=None):
    """The systemd units and supervisord programs that run `app` in `chdir`
    -> [{'source', 'field', 'user', 'group', 'env', 'manager', 'command'}]; user/group None where the runner sets
    none; command: {'argv', 'directory'} of its ExecStart= / command= (service_env.runner_file_command) or None."""
    runners = []
    unit_args = {'unit_dirs': unit_dirs} if unit_dirs else {}
    for path, env in service_env.find_unit_environments(app, chdir=chdir, **unit_args):
        text = '\n'.join(service_env.read_text(p) or '' for p in [path] + sorted(glob.glob(path + '.d/*.conf')))
        user, group = service_env.runner_file_user('systemd', text, None)
        if user == 'dynamic' and not _known_user(user):
            user = 'nobody'  # DynamicUser=yes: an unprivileged user allocated at start; nobody is the closest here
        runners.append({'source': path, 'field': 'User=', 'user': user, 'group': group, 'env': env,
                        'manager': 'systemd', 'command': service_env.runner_file_command('systemd', text, None, env)})
    conf_args = {'conf_globs': conf_globs} if conf_globs else {}
    for where, env in service_env.find_supervisord_environments(app, chdir=chdir, **conf_args):
        path, dummy, program = where.partition(' [program:')
        text = service_env.read_text(path)
        user = service_env.runner_file_user('supervisord', text, program.rstrip(']'))[0]
        runners.append({'source': where, 'field': 'user=', 'user': user, 'group': None, 'env': env,
                        'manager': 'supervisord',
                        'command': service_env.runner_file_command('supervisord', text, program.rstrip(']'))})
    return runners


def _known_user(name):
    try:
        return pwd.getpwnam(name) is not None
    except (AttributeError, KeyError):
        return False


# --- with what ------------------------------------------------------------------------------------------
def child_env(service_environ, ident, home):
    """The service's environment for app code run as `ident`, with `home` as its HOME and TMPDIR's parent."""
    env = dict((k, v) for k, v in (service_environ or {}).items() if not NOT_PASSED.match(k))
    env.setdefault('PATH', DEFAULT_PATH)
    env.setdefault('LANG', 'C.UTF-8')
    env.update(HOME=home, TMPDIR=os.path.join(home, 'tmp'), USER=ident['name'], LOGNAME=ident['name'],
               PYTHONDONTWRITEBYTECODE='1')  # read-only: no __pycache__ left in the app
    return env


def _private_dir(ident):
    """A fresh 0700 directory (and tmp/ in it) owned by `ident`, in the shared /tmp it can reach."""
    parent = '/tmp' if os.path.isdir('/tmp') else tempfile.gettempdir()
    path = tempfile.mkdtemp(prefix='gunicorn-doctor-', dir=parent)
    try:
        os.mkdir(os.path.join(path, 'tmp'), 0o700)
        for name in (path, os.path.join(path, 'tmp')):
            if os.geteuid() == 0:
                os.chown(name, ident['uid'], ident['gid'])
    except (IOError, OSError):
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path


def _switch_to(ident):
    """subprocess arguments that make the child `ident` (a root prober only; the groups always include the
    primary one, else an empty list would keep root's own)."""
    if os.geteuid() != 0:
        return {}
    return {'user': ident['uid'], 'group': ident['gid'], 'extra_groups': ident['groups']}


# --- for how long ---------------------------------------------------------------------------------------
def open_run(ident, service_environ, timeout, psutil=None, on_line=None):
    """-> (AppRun, None), or (None, why) when its private directory cannot be made (e.g. /tmp is full)."""
    try:
        return AppRun(ident, service_environ, timeout, psutil, on_line), None
    except (IOError, OSError) as e:
        return None, 'cannot make a private HOME in /tmp: %s' % (getattr(e, 'strerror', None) or e)


class AppRun(object):
    """One run of app code in a session of its own, as `ident`, with a private HOME. Leaving the `with` block
    stops whatever still runs and removes the private directory:

        with AppRun(ident, service_environ, timeout, psutil) as run:
            run.start(argv, cwd)
            run.wait_exit(run.deadline)
        run.lines, run.exit_code
    """

    def __init__(self, ident, service_environ, timeout, psutil=None, on_line=None):
        self.ident = ident or prober_identity()
        self.psutil = psutil
        self.on_line = on_line
        self.started = time.time()
        self.deadline = self.started + timeout
        self.home = _private_dir(self.ident)
        self.token = os.urandom(12).hex()
        self.env = child_env(service_environ, self.ident, self.home)
        self.env[TOKEN] = self.token
        self.proc = None
        self.exit_code = None
        self.lines = collections.deque()
        self._size = 0
        self._stopped_at = None
        self._reader = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def write(self, name, text):
        """A file of ours in the private directory, readable by the run -> its path."""
        path = os.path.join(self.home, name)
        with open(path, 'w') as f:
            f.write(text)
        if os.geteuid() == 0:
            os.chown(path, self.ident['uid'], self.ident['gid'])
        return path

    def start(self, argv, cwd=None):
        """Start argv in a new session (its PID is the session and process group id). Raises OSError when it
        cannot start, e.g. an interpreter the service user may not execute."""
        self.proc = subprocess.Popen(argv, cwd=cwd or self.home, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                     **_switch_to(self.ident))
        self._reader = threading.Thread(target=self._drain)
        self._reader.daemon = True
        self._reader.start()

    def running(self):
        """Whether the session leader runs. It is not reaped here (WNOWAIT): until stop() its PID, the id of the
        session and of the group, cannot be given to another process."""
        if self.proc is None or self.exit_code is not None:
            return False
        try:
            return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def wait_exit(self, until):
        """Wait until the leader exits or `until` (a time.time()) -> whether it exited."""
        while self.running() and time.time() < until:
            time.sleep(POLL)
        return not self.running()

    def remaining(self):
        return max(0.0, self.deadline - time.time())

    def stop(self, grace=1.0):
        """TERM the process group, KILL it after `grace`, then kill the survivors (see _survivors), reap the
        leader and stop reading its output (at once at EOF, else after DRAIN_AFTER_STOP)."""
        if self.proc is None or self._stopped_at is not None:
            return
        if self.running():
            _signal_group(self.proc.pid, signal.SIGTERM)
            self.wait_exit(time.time() + grace)
        _signal_group(self.proc.pid, signal.SIGKILL)
        for dummy in range(5):  # a survivor may fork while we look
            found = self._survivors()
            for proc in found:
                try:
                    proc.kill()  # psutil checks the start time first: never a recycled PID
                except Exception:  # gone meanwhile
                    pass
            if not found or not wait_gone(self.psutil, found, 1.0):
                break
        self.exit_code = self.proc.wait()
        self._stopped_at = time.time()
        self._reader.join(DRAIN_AFTER_STOP + 1.0)

    def _survivors(self):
        """Processes of this run that the process group no longer holds:
        - the same session or process group (one that moved to a group of its own, or forked while killpg ran);
        - the run's token in its environment: a helper that left the session (a double fork and setsid) but kept
          the environment it was started with.
        Only processes started since the run began. A helper that leaves the session and drops its environment
        too escapes: a cgroup would hold it, but a delegated cgroup tree is not there on every host."""
        if self.psutil is None:
            return []
        found = []
        for proc in self.psutil.process_iter():
            try:
                if proc.pid == self.proc.pid or proc.create_time() < self.started - 1 or not alive(self.psutil, proc):
                    continue
                if self.proc.pid in (os.getsid(proc.pid), os.getpgid(proc.pid)) or \
                        (service_env.read_proc_environ(proc.pid) or {}).get(TOKEN) == self.token:
                    found.append(proc)
            except Exception:  # psutil.NoSuchProcess / AccessDenied, OSError: gone or not ours to read
                continue
        return found

    def _drain(self):
        """Read the output as it comes, until EOF or DRAIN_AFTER_STOP after the stop: a helper that escaped with
        the pipe must not hold the probe."""
        fd = self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        partial = b''
        try:
            while self._stopped_at is None or time.time() < self._stopped_at + DRAIN_AFTER_STOP:
                if not poller.poll(100):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                partial = self._feed(partial + chunk)
            if partial:
                self._keep(partial)
        finally:
            self.proc.stdout.close()

    def _feed(self, data):
        lines = data.split(b'\n')
        for raw in lines[:-1]:
            self._keep(raw)
        partial = lines[-1]
        while len(partial) > MAX_LINE:  # a line without end is cut, not kept whole
            self._keep(partial[:MAX_LINE])
            partial = partial[MAX_LINE:]
        return partial

    def _keep(self, raw):
        line = raw[:MAX_LINE].decode('utf-8', 'replace').rstrip('\r')
        self.lines.append(line)
        self._size += len(line)
        while self._size > MAX_OUTPUT and len(self.lines) > 1:  # the tail is what tells
            self._size -= len(self.lines.popleft())
        if self.on_line is not None:
            self.on_line(line)


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except OSError:  # ProcessLookupError: the group is empty
        pass
