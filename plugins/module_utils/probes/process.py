# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""process layer: the app's gunicorn masters and workers, who started them, and its strays.

Observes only (psutil reads /proc); decides nothing.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import time

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn, gunicorn_settings, service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import safe_read
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.processes import is_within

SHELLS = ('sh', 'bash', 'dash', 'zsh', 'ksh', 'busybox')
PLATFORM_RUNNERS = ('honcho', 'foreman', 'tini', 'dumb-init', 'docker-init', 's6-supervise', 'runsv',
                    'circusd', 'pm2', 'containerd-shim', 'conmon', 'heroku', 'procfile', 'overmind')
SIGHUP_BIT = 1 << 0  # bit (signal 1 - 1) of SigIgn: set by nohup
_APP_SPEC = re.compile(r'^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*(\(.*\))?$')
CONFIG_LIMIT = 256 << 10  # a gunicorn config file is a few lines; read no more than this of one


def app_module_names(app):
    """`AgentLocator.main:app` -> {'AgentLocator.main', 'AgentLocator'}: what a stray's argv may name."""
    module = gunicorn.split_app_spec(app)[0]
    return set([module, module.split('.')[0]]) - set([''])


def _info(proc, whole=True):
    """What the probes read of a process; `whole=False`: without its cwd and user (a readlink and /proc/PID/status
    more), which only the processes that may be the app's need (add them with _complete)."""
    try:
        with proc.oneshot():
            info = {
                'pid': proc.pid,
                'ppid': proc.ppid(),
                'name': proc.name(),
                'cmdline': _without_title_padding(proc.cmdline()),
                'create_time': proc.create_time(),
            }
            return _complete(proc, info) if whole else info
    except Exception:  # vanished or not ours to read: psutil.NoSuchProcess / AccessDenied / ZombieProcess
        return None


def _complete(proc, info):
    info.update(cwd=_safe(proc.cwd), username=_safe(proc.username))
    return info


def may_be_the_apps(argv):
    """Whether a command line may be the app's: a gunicorn, or what stray_reason reads (python, flask). The rest of
    a host's processes need no more than their command line read."""
    prog = os.path.basename(argv[0]) if argv else ''
    return prog.startswith(('python', 'flask')) or gunicorn.is_gunicorn_cmdline(argv)


def _without_title_padding(argv):
    """setproctitle pads a title with NULs, which psutil returns as empty arguments: drop them."""
    if argv and argv[0].startswith('gunicorn:'):
        while argv and not argv[-1]:
            argv = argv[:-1]
    return argv


def _safe(call):
    try:
        return call()
    except Exception:
        return None


def belongs_to_app(info, app, chdir):
    """Why a gunicorn process belongs to this app (a non-empty reason), or '' when it does not.

    The app spec alone is not proof: two checkouts of one app (staging and production, blue and
    green) share it. The directory it runs in must be the app's too, when we may read it.
    """
    title = gunicorn_settings.process_title(info['cmdline'])
    settings = gunicorn.parse_cmdline(info['cmdline']) if title is None else {'app': title[1]}
    in_dir = is_within(settings.get('chdir') or info['cwd'], chdir)
    if settings.get('app') == app and (in_dir or info['cwd'] is None):
        return 'app spec %s in its %s, running in %s' % (
            app, 'command line' if title is None else 'process title', info['cwd'] or 'an unreadable cwd')
    if title is not None and in_dir:
        return 'gunicorn titled "%s" running in %s' % (' '.join(info['cmdline']), chdir)
    if settings.get('app') is None and in_dir:
        return 'gunicorn with no app spec running in %s' % chdir
    return ''


def python_target(argv):
    """What a python command line runs, past the interpreter's own options -> (kind, value, rest):
    ('module', NAME, args) for `-m NAME`, ('script', PATH, args) for the first other argument,
    ('command', CODE, args) for `-c`, or (None, None, []) when it runs nothing we can name."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == '--':
            return ('script', argv[i + 1], argv[i + 2:]) if i + 1 < len(argv) else (None, None, [])
        if arg == '-':
            return None, None, []  # the program comes from stdin
        if not arg.startswith('-'):
            return 'script', arg, argv[i + 1:]
        if arg.startswith('--'):
            i += 2 if arg == '--check-hash-based-pycs' else 1
            continue
        for j, flag in enumerate(arg[1:], 2):
            if flag in 'cm':  # the rest of the argument, or the next one, is the value; the interpreter's options end
                if arg[j:]:
                    return ('module' if flag == 'm' else 'command'), arg[j:], argv[i + 1:]
                value = argv[i + 1] if i + 1 < len(argv) else ''
                return ('module' if flag == 'm' else 'command'), value, argv[i + 2:]
            if flag in 'WX':  # -W arg, -X opt: a value of its own
                i += 0 if arg[j:] else 1
                break
        i += 1
    return None, None, []


def app_entry_files(app, chdir):
    """The files `python FILE` runs the app from: each app module's file (or package __main__) under chdir."""
    files = set()
    for name in app_module_names(app):
        base = os.path.join(chdir, *name.split('.'))
        files.update((base + '.py', os.path.join(base, '__main__.py')))
    return set(os.path.realpath(f) for f in files)


def stray_reason(info, app, chdir, entry_files=None):
    """Why a non-gunicorn process is an earlier run of this app ('' when it is not).

    Only what the interpreter runs counts: `-m <app module>` in the app's directory (a module name
    resolves from the cwd: the same name in another checkout is another app), the script argument
    when it is the app module's own file, or `flask run` in the app's directory. Never a `.py` that
    is merely an argument (`python -m pytest tests/test_x.py`), an option's value (`python -m celery
    -A AgentLocator worker`), or another script under the app's directory (`python tools/backup.py`).
    `entry_files`: app_entry_files(app, chdir), when the caller asks for many processes.
    """
    argv, cwd = info['cmdline'], info['cwd']
    prog = os.path.basename(argv[0]) if argv else ''
    if prog.startswith('flask'):
        return _flask_reason(argv[1:], cwd, chdir)
    if not prog.startswith('python'):
        return ''
    kind, target, rest = python_target(argv)
    if kind == 'module' and target == 'flask':
        return _flask_reason(rest, cwd, chdir)
    if kind == 'module' and target in app_module_names(app) and is_within(cwd, chdir):
        return 'runs the app module %s (%s)' % (target, ' '.join(argv[:4]))
    if kind == 'script':
        path = target if os.path.isabs(target) else os.path.join(cwd, target) if cwd else None
        if path and os.path.realpath(path) in (entry_files or app_entry_files(app, chdir)):
            return 'runs %s from the app directory (the app module\'s file)' % target
    return ''


def _flask_reason(args, cwd, chdir):
    if 'run' in args and is_within(cwd, chdir):
        return 'Flask dev server (flask run) in %s' % chdir
    return ''


def _proc_lines(pid, name):
    return (safe_read.read_text('/proc/%d/%s' % (pid, name), 64 << 10).data or '').splitlines()


def _sighup_ignored(pid):
    for line in _proc_lines(pid, 'status'):
        if line.startswith('SigIgn:'):
            try:
                return bool(int(line.split()[1], 16) & SIGHUP_BIT)
            except (IndexError, ValueError):
                return False
    return False


def _systemd_unit(pid):
    for line in _proc_lines(pid, 'cgroup'):
        for part in line.strip().split('/'):
            if part.endswith('.service'):
                return part
    return None


def identify_runner(psutil, pid):
    """Which runner started a process: walk its parents -> dict(kind, detail, pid)."""
    if pid == 1:
        return {'kind': 'platform', 'pid': None, 'detail': "PID 1 of its PID namespace: a container's main process "
                '(the container runtime restarts the container by its restart policy)'}
    unit = _systemd_unit(pid)
    chain = []
    try:
        proc = psutil.Process(pid)
        parents = proc.parents()
    except Exception:
        return {'kind': 'unknown', 'detail': 'process vanished', 'pid': None}
    shell = None   # a plain shell between the process and its runner (a program's `bash start.sh` without exec)
    for parent in parents:
        info = _info(parent)
        if info is None:
            continue
        chain.append(info)
        name = info['name']
        cmd = ' '.join(info['cmdline'])
        argv = info['cmdline'] or ['']
        # By name or by the script python runs (`python /usr/bin/supervisord`), never by a word in
        # some other command line (`pytest -k supervisord`).
        if name == 'supervisord' or 'supervisord' in [os.path.basename(a) for a in argv[:2]]:
            # supervisord names the program in the environment of each process it starts.
            program = (service_env.read_proc_environ(pid) or {}).get('SUPERVISOR_PROCESS_NAME')
            return _via(shell, {'kind': 'supervisord', 'detail': cmd[:200], 'pid': info['pid'], 'program': program})
        if name in ('cron', 'crond', 'anacron'):
            return _via(shell, {'kind': 'cron', 'detail': cmd[:200], 'pid': info['pid']})
        if name in PLATFORM_RUNNERS or os.path.basename(info['cmdline'][0] if info['cmdline'] else '') in PLATFORM_RUNNERS:
            return _via(shell, {'kind': 'platform', 'detail': '%s (%s)' % (name, cmd[:160]), 'pid': info['pid']})
        if name in SHELLS and shell is None:
            looping = any(word in cmd for word in ('while ', 'until ', 'for ', 'sleep'))
            shell = {'kind': 'shell_loop' if looping else 'shell', 'detail': cmd[:200], 'pid': info['pid']}
            if looping:
                return shell
            shell['at'] = len(chain) - 1   # its place in the chain: what started it comes next
            continue   # a script that runs gunicorn: its own runner, unless a manager runs the script
        if info['pid'] == 1:
            break
    if shell is not None:
        return _shell_runner(shell, chain, unit)
    parent = chain[0] if chain else None
    if parent is None:
        return {'kind': 'unknown', 'detail': 'no parent', 'pid': None}
    if parent['pid'] == 1:
        if unit and parent['name'] == 'systemd':
            return {'kind': 'systemd', 'detail': unit, 'pid': 1}
        # The shell that started it is gone. gunicorn installs its own SIGHUP handler, so nohup's
        # SIG_IGN is only visible on plain python runs; nohup's default output file gives it away too.
        if _sighup_ignored(pid) or (_stdout_path(pid) or '').endswith('nohup.out'):
            return {'kind': 'nohup', 'detail': 'SIGHUP ignored or output to nohup.out, reparented to pid 1',
                    'pid': None}
        program = (service_env.read_proc_environ(pid) or {}).get('SUPERVISOR_PROCESS_NAME')
        if program:   # supervisord stopped its program's shell, and the signal never reached gunicorn
            return {'kind': 'detached', 'pid': None, 'program': program, 'detail': (
                'left behind by supervisord [program:%s], reparented to pid 1: its stop signalled only the shell of '
                'the program\'s command, not gunicorn (exec gunicorn in the script, or set stopasgroup=true and '
                'killasgroup=true)' % program)}
        return {'kind': 'detached', 'detail': 'its starting shell exited and it was reparented to pid 1 (%s): '
                'nohup, setsid or `&` in a script' % parent['name'], 'pid': None}
    detail = '%s (pid %d): %s' % (parent['name'], parent['pid'], ' '.join(parent['cmdline'])[:160])
    return {'kind': 'other', 'detail': detail, 'pid': parent['pid']}


def _shell_runner(shell, chain, unit):
    """The runner of a process a plain shell script started, no manager above it: the shell, unless it is a unit's
    ExecStart= script (its parent is systemd as pid 1)."""
    above = chain[shell.pop('at') + 1:][:1]
    if unit and above and above[0]['pid'] == 1 and above[0]['name'] == 'systemd':
        return _via(shell, {'kind': 'systemd', 'detail': unit, 'pid': 1})
    return shell


def _via(shell, runner):
    """`runner` runs the process through the plain `shell` script (None: directly); the shell is named."""
    return dict(runner, via=shell['detail']) if shell is not None else runner


def _stdout_path(pid):
    try:
        return os.readlink('/proc/%d/fd/1' % pid)
    except OSError:
        return None


def _daemon_runner(settings):
    """`gunicorn --daemon --pid FILE` detaches from whoever started it: the pidfile is the runner."""
    if settings.get('daemon'):
        return {'kind': 'standalone', 'detail': 'gunicorn --daemon, pidfile %s' % (settings.get('pidfile') or 'none'),
                'pid': None}
    return None


# --- the settings a master runs with ------------------------------------------------------------------------
def read_config_file(path):
    """A gunicorn config file's text, bounded; never run. Raises OSError when it cannot be read."""
    done = safe_read.read_text(path, CONFIG_LIMIT, follow=True)
    if done.data is None:
        raise OSError(done.error)
    if done.truncated:
        raise ValueError('it is larger than %d KiB' % (CONFIG_LIMIT >> 10))
    return done.data


def _runner_config(runners, runner):
    """The unit or program (app_runner.find_runners) that runs this master: the one its runner names, else the
    only one of the kind, else the first with a command."""
    kind = (runner or {}).get('kind')
    with_command = [r for r in runners or () if r.get('command')]
    named = [r for r in with_command if kind == 'systemd' and os.path.basename(r['source']) == runner.get('detail')]
    same_kind = [r for r in with_command if r.get('manager') == kind]
    for found in (named, same_kind, with_command):
        if found:
            return found[0]
    return None


def _own_sockets(psutil, pid, argv=()):
    """The bind specs of the sockets a master serves on (inet and unix; not gunicorn 25's control socket)."""
    try:
        proc = psutil.Process(pid)
        conns = getattr(proc, 'net_connections', getattr(proc, 'connections', None))(kind='all')
    except Exception:  # vanished, or not ours to read
        return []
    binds = []
    for conn in conns:
        unix_listening = isinstance(conn.laddr, str) and conn.laddr and conn.status == psutil.CONN_NONE
        listening = conn.status == psutil.CONN_LISTEN or unix_listening
        if listening and conn.laddr and conn.type == 1 and not gunicorn_settings.control_socket(conn.laddr, argv):
            binds.append(gunicorn_settings.socket_bind(conn.laddr))
    return sorted(set(binds))


def _inputs(info, runner, runners, env_file_env):
    """What the master's settings are computed from -> (argv, environ, cwd, [what was used])."""
    pid, argv, cwd = info['pid'], info['cmdline'], info['cwd']
    environ = service_env.read_proc_environ(pid)
    title = gunicorn_settings.process_title(argv)
    if title is None:
        used = ['its command line']
        used.append('/proc/%d/environ' % pid if environ is not None else 'not its environment (unreadable)')
        return argv, environ or {}, cwd, used
    used = ['its process title "%s" (setproctitle hides the command line)' % ' '.join(argv)]
    config = _runner_config(runners, runner)
    if config:
        argv = config['command']['argv']
        cwd = cwd or config['command']['directory']
        used.append('the command of %s' % config['source'])
    else:   # the title's name: the app spec unless -n / proc_name renames it (then it is no app spec)
        argv = ['gunicorn'] + ([title[1]] if title[1] and _APP_SPEC.match(title[1]) else [])
        used.append('no runner command (no systemd unit or supervisord program runs the app)')
    if not environ:   # setproctitle blanks /proc/PID/environ
        environ = dict(config['env']) if config else {}
        environ.update(env_file_env or {})
        sources = ([config['source']] if config else []) + (['doctor_env_file'] if env_file_env else [])
        used.append('the environment of %s' % (' and '.join(sources) or 'nothing (no runner, no doctor_env_file)'))
    return argv, environ, cwd, used


def master_settings(psutil, info, runner, runners=(), env_file_env=None):
    """The settings a master runs with, each with its source (gunicorn_settings.effective) -> facts:
    settings {key: value} (None: computed by the config file and not known), settings_sources {key: source},
    settings_computed {key: expression}, config_file, settings_from [what was read], settings_problems."""
    argv, environ, cwd, used = _inputs(info, runner, runners, env_file_env)
    found = gunicorn_settings.effective(argv, environ, cwd, read_config_file)
    settings, sources, computed = found['settings'], found['sources'], found['computed']
    if found['config_file'] and not any(found['config_file'] in p for p in found['problems']):
        used.append('the config file %s (read, never run)' % found['config_file'])
    title = gunicorn_settings.process_title(info['cmdline'])
    activated = gunicorn_settings.socket_activation(environ, info['pid'])
    # Reading sockets parses /proc/net/* (~0.1 s per master): only when argv is hidden, the config computes the bind
    # or a service manager passed the sockets.
    sockets = _own_sockets(psutil, info['pid'], info['cmdline']) if title is not None or settings['bind'] is None or activated else []
    if sockets and activated:
        settings['bind'], sources['bind'] = sockets, '%s (LISTEN_FDS=%d in its environment)' % (
            gunicorn_settings.SOCKET_ACTIVATION, activated)
        computed.pop('bind', None)
        used.append('its listening sockets, passed by socket activation')
    elif sockets:
        # What it listens on is the truth when the config computes the bind, or argv is hidden.
        why = computed.pop('bind', None)
        computed_note = ' (the config computes it: %s)' % why if why else ''
        settings['bind'], sources['bind'] = sockets, 'listening sockets' + computed_note
        used.append('its listening sockets')
    if settings['bind'] is None:
        settings['bind'] = []
    if title is not None and settings.get('app') and sources.get('app') == gunicorn_settings.COMMAND_LINE and \
            not any(u.startswith('the command of ') for u in used):
        sources['app'] = 'process title'   # no runner command: the app spec is the title's
    return {'settings': settings, 'settings_sources': sources, 'settings_computed': computed,
            'config_file': found['config_file'], 'settings_from': used, 'settings_problems': found['problems']}


def scan(psutil):
    """The process table in one pass -> [(psutil.Process, its info without cwd and user)]: the probes that look at
    every process (collect here, restart_runner's shell loops and health checkers, the system layer) share it, so
    each /proc entry is read once per probe run, not once per question. Each info has its resident memory too
    (`rss_bytes`, None when not ours to read): the system layer names the largest processes."""
    table = []
    for proc in psutil.process_iter():
        info = _info(proc, whole=False)
        if info is not None:
            info['rss_bytes'] = getattr(_safe(proc.memory_info), 'rss', None)
            table.append((proc, info))
    return table


def collect(psutil, app, chdir, exclude_pids=(), now=None, runners=(), env_file_env=None, table=None):
    """The process table (`table`, from scan(), or scanned here) -> facts about the app's gunicorn processes and
    strays.

    `runners` (app_runner.find_runners) and `env_file_env` stand in for the command line and the environment a
    setproctitle'd master hides."""
    now = now or time.time()
    # PID 1 is read too: gunicorn is a container's main process (`CMD ["gunicorn", ...]`); it is never signalled
    # (strays, processes.signal_proc).
    exclude = set(exclude_pids)
    gunicorns, strays = {}, []
    entry_files = app_entry_files(app, chdir)   # once: a realpath of each, not per python process
    for proc, info in scan(psutil) if table is None else table:
        if proc.pid in exclude or not may_be_the_apps(info['cmdline']):
            continue
        info = _complete(proc, dict(info))   # a copy: the table is shared
        if gunicorn.is_gunicorn_cmdline(info['cmdline']):
            reason = belongs_to_app(info, app, chdir)
            if reason:
                info['reason'] = reason
                gunicorns[info['pid']] = info
            continue
        reason = stray_reason(info, app, chdir, entry_files)
        if reason:
            info['reason'] = reason
            info['age'] = round(now - info['create_time'], 1)
            info['kind'] = 'dev_server'
            strays.append(info)

    masters = []
    for pid, info in sorted(gunicorns.items()):
        if info['ppid'] in gunicorns:
            continue  # a worker; attached to its master below
        workers = [{'pid': w['pid'], 'age': round(now - w['create_time'], 1), 'create_time': w['create_time']}
                   for w in gunicorns.values() if w['ppid'] == pid]
        runner = identify_runner(psutil, pid)
        effective = master_settings(psutil, info, runner, runners, env_file_env)
        settings = effective.pop('settings')
        runner = _daemon_runner(settings) or runner
        masters.append(dict(effective, **{
            'pid': pid,
            'ppid': info['ppid'],
            'cmdline': ' '.join(info['cmdline']),
            'cwd': info['cwd'],
            'username': info['username'],
            'age': round(now - info['create_time'], 1),
            'create_time': info['create_time'],
            'settings': settings,
            'workers': sorted(workers, key=lambda w: w['pid']),
            'runner': runner,
            'reason': info['reason'],
        }))
    # A gunicorn of this app whose parent is not one of them and which runs no workers while
    # configured for some is a worker orphaned by a dead master.
    for master in list(masters):
        if not master['workers'] and master['ppid'] == 1 and master['cmdline'].startswith('gunicorn: worker'):
            masters.remove(master)
            strays.append(dict(master, kind='orphan_worker', reason='gunicorn worker without its master'))
    return {'masters': masters, 'strays': [_public_stray(s) for s in strays]}


def _public_stray(info):
    return {
        'pid': info['pid'],
        'ppid': info['ppid'],
        'cmdline': info['cmdline'] if isinstance(info['cmdline'], str) else ' '.join(info['cmdline']),
        'cwd': info['cwd'],
        'age': info.get('age'),
        'create_time': info['create_time'],
        'kind': info.get('kind', 'dev_server'),
        'reason': info['reason'],
    }
