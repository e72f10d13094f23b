# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Text in, data out: gunicorn command lines, bind specs and log lines.

Pure functions with no Ansible import, so plain pytest covers them.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import shlex

# gunicorn defaults for the settings the doctor cares about.
DEFAULTS = {
    'worker_class': 'sync',
    'workers': 1,
    'timeout': 30,
    'preload': False,
    'bind': ['127.0.0.1:8000'],
    'daemon': False,
}

_VALUE_OPTS = {
    '-k': 'worker_class', '--worker-class': 'worker_class',
    '-w': 'workers', '--workers': 'workers',
    '-t': 'timeout', '--timeout': 'timeout',
    '-b': 'bind', '--bind': 'bind',
    '-c': 'config', '--config': 'config',
    '--chdir': 'chdir',
    '--error-logfile': 'error_logfile', '--log-file': 'error_logfile',
    '--access-logfile': 'access_logfile',
    '-p': 'pidfile', '--pid': 'pidfile',
    '--keep-alive': 'keepalive',
    '--log-level': 'loglevel',
    '--threads': 'threads',
    '--worker-connections': 'worker_connections',
    '--graceful-timeout': 'graceful_timeout',
    '-u': 'user', '--user': 'user',
    '-g': 'group', '--group': 'group',
    '-e': 'raw_env', '--env': 'raw_env',
    '-n': 'proc_name', '--name': 'proc_name',
}
_REPEATED = ('bind', 'raw_env')   # options that may be given more than once, each adding a value
_FLAG_OPTS = {'--preload': 'preload', '-D': 'daemon', '--daemon': 'daemon',
              '--capture-output': 'capture_output', '--reload': 'reload'}
# gunicorn's other options that take no value; every other unknown option consumes the next argument.
_OTHER_FLAGS = frozenset(('-R', '--enable-stdio-inheritance', '--check-config', '--print-config', '--spew',
                          '--no-sendfile', '--reuse-port', '--no-control-socket', '--log-syslog',
                          '--disable-redirect-access-to-syslog', '--strip-header-spaces', '--do-handshake-on-connect',
                          '--suppress-ragged-eofs', '--paste-global-conf', '-v', '--version', '-h', '--help'))
_APP_LIKE = re.compile(r'^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*(\(.*\))?)?$')
_INT_SETTINGS = ('workers', 'timeout', 'keepalive', 'threads', 'worker_connections', 'graceful_timeout')


def is_gunicorn_cmdline(argv):
    """True when argv runs gunicorn: `gunicorn ...`, `python [-u] -m gunicorn ...`,
    `python /venv/bin/gunicorn ...`, `gunicorn: master [...]` (setproctitle)."""
    if not argv:
        return False
    if argv[0].startswith('gunicorn:') or os.path.basename(argv[0]) == 'gunicorn':
        return True
    if not os.path.basename(argv[0]).startswith('python'):
        return False
    for i, arg in enumerate(argv[1:], 1):
        if arg == '-m':
            return i + 1 < len(argv) and argv[i + 1] == 'gunicorn'
        if not arg.startswith('-'):
            return os.path.basename(arg) == 'gunicorn'  # the script python runs
    return False


def parse_cmdline(argv):
    """Parse a gunicorn argv into settings: app spec, worker class, binds, workers, timeout, preload...

    Unknown options are kept out of the result; the last positional argument is the app spec; what the
    argv does not set has gunicorn's default (gunicorn_settings.effective adds the config file and
    GUNICORN_CMD_ARGS)."""
    settings = dict(DEFAULTS, bind=list(DEFAULTS['bind']), app=None)
    settings.update(parse_args(argv))
    settings['worker_class'] = normalize_worker_class(settings['worker_class'])
    return settings


def _drop_program(argv):
    """argv without the interpreter / `-m gunicorn` / gunicorn script prefix."""
    args = list(argv)
    while args and not args[0].startswith('-') and os.path.basename(args[0]) != 'gunicorn':
        if len(args) > 1 and args[1] == '-m':
            return args[3:]  # the interpreter, -m and the module (gunicorn)
        args = args[1:]
    if args and os.path.basename(args[0]) == 'gunicorn':
        args = args[1:]
    return args


def _split_option(arg):
    """`--bind=x` -> ('--bind', 'x'); `-b0.0.0.0:80` -> ('-b', '0.0.0.0:80'); else (arg, None)."""
    if arg.startswith('--') and '=' in arg:
        return tuple(arg.split('=', 1))
    if len(arg) > 2 and arg[:2] in _VALUE_OPTS and not arg.startswith('--'):
        return arg[:2], arg[2:]
    return arg, None


def parse_args(argv):
    """Only the settings an argv sets itself (no defaults): {key: value}; `bind` and `raw_env` are lists."""
    settings = {}
    args = _drop_program(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, value = _split_option(arg)
        if name in _VALUE_OPTS:
            if value is None:
                i += 1
                value = args[i] if i < len(args) else ''
            key = _VALUE_OPTS[name]
            if key in _REPEATED:
                settings.setdefault(key, []).append(value)
            else:
                settings[key] = value
        elif name in _FLAG_OPTS:
            settings[_FLAG_OPTS[name]] = True
        elif arg.startswith('-'):
            # An option we do not track: skip its value too, or it would pass for the app spec.
            if name not in _OTHER_FLAGS and '=' not in arg and _takes_next(args, i):
                i += 1
        else:
            settings['app'] = arg
        i += 1
    for key in _INT_SETTINGS:
        if key in settings:
            try:
                settings[key] = int(settings[key])
            except (TypeError, ValueError):
                pass
    if 'worker_class' in settings:
        settings['worker_class'] = normalize_worker_class(settings['worker_class'])
    return settings


def _takes_next(args, i):
    """Whether the unknown option at args[i] has its value in args[i + 1] (not an option, and not
    the final app spec)."""
    if i + 1 >= len(args) or args[i + 1].startswith('-'):
        return False
    is_last = i + 2 == len(args)
    return not (is_last and ':' in args[i + 1] and _APP_LIKE.match(args[i + 1]))


def normalize_worker_class(value):
    """`eventlet`, `gunicorn.workers.geventlet.EventletWorker` -> `eventlet`; sync likewise."""
    value = (value or 'sync').strip()
    lowered = value.lower()
    # gunicorn's worker modules: gunicorn.workers.{sync,gthread,geventlet,ggevent,gtornado}.
    modules = {'sync': 'sync', 'gthread': 'gthread', 'geventlet': 'eventlet', 'ggevent': 'gevent',
               'gtornado': 'tornado'}
    for short in ('eventlet', 'gevent', 'gthread', 'tornado', 'sync'):
        if lowered == short:
            return short
    parts = lowered.split('.')
    for module, short in modules.items():
        if module in parts[:-1]:
            return short
    for short in ('eventlet', 'gevent', 'gthread', 'tornado', 'sync'):
        if short in parts[-1]:
            return short
    return value


def parse_bind(spec):
    """A gunicorn bind spec -> dict(family, host, port) (`unix:/x.sock` -> family unix, port None).

    Raises ValueError with gunicorn's wording for a port that is not a number.
    """
    spec = spec.strip()
    if spec.startswith('unix:'):
        return {'family': 'unix', 'host': spec[5:], 'port': None}
    if spec.startswith('fd://'):
        return {'family': 'fd', 'host': spec[5:], 'port': None}
    if spec.startswith('['):
        host, dummy, rest = spec[1:].partition(']')
        port = rest[1:] if rest.startswith(':') else '8000'
        family = 'inet6'
    elif spec.count(':') == 1:
        host, port = spec.split(':')
        family = 'inet'
    elif ':' not in spec:
        host, port, family = spec, '8000', 'inet'
    else:
        host, port, family = spec, '8000', 'inet6'
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("'%s' is not a valid port number." % port)
    return {'family': family, 'host': host or '0.0.0.0', 'port': int(port)}


def binds_of(master):
    """The binds a running master serves. The one place that says where they come from: today the master's argv
    (process facts' `settings`, parsed by parse_cmdline; gunicorn's default when the argv has none)."""
    return list((master.get('settings') or {}).get('bind') or [])


def unix_path(spec):
    """`unix:/run/app/app.sock` -> '/run/app/app.sock'; any other bind (host:port, fd://) -> None."""
    spec = (spec or '').strip()
    return spec[5:] if spec.startswith('unix:') and len(spec) > 5 else None


def tcp_port(spec):
    """`0.0.0.0:8000`, `[::1]:8000`, `http://127.0.0.1:8000` -> 8000; a unix socket, fd:// or no port -> None."""
    spec = (spec or '').strip()
    spec = spec.split('://', 1)[1] if spec.startswith(('http://', 'https://')) else spec
    host, sep, port = spec.rstrip('/').rpartition(':')
    return int(port) if sep and host and not spec.startswith(('unix:', 'fd:')) and port.isdigit() else None


def split_app_spec(spec):
    """`AgentLocator.main:app` -> ('AgentLocator.main', 'app'); gunicorn's default variable is `application`."""
    module, dummy, variable = (spec or '').partition(':')
    variable = variable.strip() or 'application'
    # `create_app()` factories: keep the callable's name.
    return module.strip(), variable


# --- log lines -------------------------------------------------------------------------------
# Default gunicorn format: `[2026-11-25 12:00:00 +0000] [4242] [INFO] message`
_LOG_PREFIX = re.compile(r'^\[(?P<time>[^\]]+)\] \[(?P<pid>\d+)\] \[(?P<level>[A-Z]+)\] (?P<msg>.*)$')

# (event name, pattern on the message). Order matters only for readability.
_EVENTS = (
    ('starting', re.compile(r'^Starting gunicorn (?P<version>\S+)')),
    # Under --reuse-port the master holds no socket and logs `Listening at:  (PID)`: no url, not a bind.
    ('listening', re.compile(r'^Listening at: (?P<url>\S*)\s*\((?P<master>\d+)\)')),
    ('worker_class', re.compile(r'^Using worker: (?P<worker_class>\S+)')),
    ('worker_boot', re.compile(r'^Booting worker with pid: (?P<worker>\d+)')),
    ('signal_term', re.compile(r'^Handling signal: term')),
    ('signal_other', re.compile(r'^Handling signal: (?P<signal>(?!term)\w+)')),
    ('master_shutdown', re.compile(r'^Shutting down: Master')),
    ('worker_failed_boot', re.compile(r'^Reason: Worker failed to boot')),
    ('app_failed_load', re.compile(r'^Reason: App failed to load')),
    ('worker_exception', re.compile(r'^Exception in worker process')),
    ('worker_timeout', re.compile(r'^WORKER TIMEOUT \(pid:(?P<worker>\d+)\)')),
    ('worker_sigkill', re.compile(r'^Worker \(pid:(?P<worker>\d+)\) was sent SIGKILL! Perhaps out of memory\?')),
    ('worker_exit', re.compile(r'^Worker \(pid:(?P<worker>\d+)\) exited with code (?P<code>\d+)')),
    ('connection_in_use', re.compile(r'^Connection in use: (?P<addr>.+)')),
    ('bind_retry', re.compile(r"^Can't connect to (?P<addr>.+)")),
)
# Lines that are not in gunicorn's format.
_RAW_EVENTS = (
    ('dev_server', re.compile(r'^\s*\* Running on (?P<url>http\S+|all addresses.*)')),
    ('dev_server_banner', re.compile(r'WARNING: This is a development server')),
    ('invalid_port', re.compile(r"^Error: '(?P<value>[^']*)' is not a valid port number")),
    ('traceback', re.compile(r'^Traceback \(most recent call last\):')),
    ('media_tx', re.compile(r'MEDIA_TX')),
)
_EXCEPTION_LINE = re.compile(r'^(?P<type>[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)|KeyError|StopIteration)(: (?P<text>.*))?$')


def parse_log_line(line):
    """One log line -> dict(event, time, pid, level, message, ...) or None when it says nothing we track."""
    line = line.rstrip('\n')
    m = _LOG_PREFIX.match(line)
    if m:
        for event, pattern in _EVENTS:
            em = pattern.search(m.group('msg'))
            if em:
                found = {'event': event, 'time': m.group('time'), 'pid': int(m.group('pid')),
                         'level': m.group('level'), 'line': line}
                found.update(dict((k, v) for k, v in em.groupdict().items() if v))
                return found
        return None
    for event, pattern in _RAW_EVENTS:
        em = pattern.search(line)
        if em:
            found = {'event': event, 'time': None, 'pid': None, 'level': None, 'line': line}
            found.update(dict((k, v) for k, v in em.groupdict().items() if v is not None))
            return found
    return None


def scan_log(lines):
    """Lines of a gunicorn log -> dict(events=[...], tracebacks=[...]).

    A traceback is kept as its last frames plus the exception line, so the report shows what
    failed without pages of output.
    """
    events = []
    tracebacks = []
    current = None
    for line in lines:
        line = line.rstrip('\n')
        if current is not None:
            if line.startswith(' ') or line.startswith('\t') or not line:
                current['frames'].append(line)
                continue
            em = _EXCEPTION_LINE.match(line)
            if em or not _LOG_PREFIX.match(line):
                current['exception'] = line
                current['frames'] = current['frames'][-6:]
                tracebacks.append(current)
                current = None
                if em:
                    continue
            else:
                current['frames'] = current['frames'][-6:]
                tracebacks.append(current)
                current = None
        event = parse_log_line(line)
        if event is None:
            continue
        if event['event'] == 'traceback':
            current = {'frames': [], 'exception': None}
            continue
        events.append(event)
    if current is not None:
        current['frames'] = current['frames'][-6:]
        tracebacks.append(current)
    return {'events': events, 'tracebacks': tracebacks}


def format_command(python, app, port_expr, worker_class='sync', workers=1, timeout=60,
                   keepalive=30, extra=None, bind=None, config=None):
    """The runbook's one canonical command line (section 1.3 / 4.2), as a shell string. `bind`: the service's own
    bind when it is not $PORT (a unix socket behind a reverse proxy that holds $PORT keeps its socket); `config`:
    the config file it keeps (-c FILE; the command line overrides only what it sets)."""
    argv = [python, '-m', 'gunicorn', app, '-k', worker_class, '-w', str(workers)] + (['-c', config] if config else [])
    argv += ['-b', bind or '0.0.0.0:%s' % port_expr, '--timeout', str(timeout), '--keep-alive', str(keepalive),
             '--log-level', 'debug', '--capture-output', '--access-logfile', '-', '--error-logfile', '-']
    argv.extend(extra or [])
    return ' '.join(a if a.startswith('0.0.0.0:$') else shlex.quote(a) for a in argv)


# --- the current run of a log ----------------------------------------------------------------------------
# An exception line as a run's output shows it (bare, or in brackets as gunicorn's error log prints it).
RUN_EXCEPTION = re.compile(r'^\[?(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Warning|Exit)): (?P<text>.*)$')


def current_run(lines, master_pids=(), previous=False):
    """The lines of the current run.

    With a running master: from its "Starting gunicorn" (and the warnings its process printed just
    before, such as EventletDeprecationWarning) to the end. Without one: the last run of the log (runs
    end with "Shutting down: Master" and its "Reason:" line; a master that failed at start ends with
    its traceback); with `previous`, also the run before it when the last one has not ended or failed yet (a crash
    loop's newest master: how the last one ended is the evidence)."""
    for pid in master_pids:
        listen = [i for i, l in enumerate(lines) if 'Listening at: ' in l and l.rstrip().endswith('(%d)' % pid)]
        if not listen:
            continue
        start = listen[-1]
        for i in range(listen[-1], -1, -1):
            if '] [%d] [INFO] Starting gunicorn' % pid in lines[i]:
                start = i
                break
        while start > 0 and not _ends_output(lines[start - 1]):
            start -= 1
        return lines[start:]
    blocks, ended = [[]], False
    for line in lines:
        closing = 'Shutting down: Master' in line or '] Reason: ' in line or line.startswith('Reason: ')
        if ended and not closing:
            blocks.append([])
            ended = False
        blocks[-1].append(line)
        ended = ended or 'Shutting down: Master' in line
    if previous and len(blocks) > 1 and not ended and not any('Traceback' in x or x.startswith('Error: ') for x in blocks[-1]):
        return blocks[-2] + blocks[-1]
    return blocks[-1]


def _ends_output(line):
    """A line that belongs to an earlier process: gunicorn's own log format, or the end of a traceback."""
    text = line.strip()
    return bool(_LOG_PREFIX.match(text)) or text == ']' or text.startswith('Error: ') or \
        bool(RUN_EXCEPTION.match(text.rstrip(']'))) or text.startswith('Reason: ')
