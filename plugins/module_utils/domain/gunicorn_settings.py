# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gunicorn's effective settings, as gunicorn itself computes them, each with where it came from.

Precedence (gunicorn 23 to 27, gunicorn/app/base.py load_config), later wins:
  defaults < the config file < GUNICORN_CMD_ARGS < the command line.
The config file is `-c` from the command line, else `--config` inside GUNICORN_CMD_ARGS, else
`gunicorn.conf.py` in the working directory when it exists. It is Python: we never run it. Its
module-level assignments are read with `ast`; a value computed from the environment
(`os.environ.get("PORT", "8000")`, f-strings, `%`, `+`, `int()`) is evaluated against the service's
own environment; anything else is reported as computed, with its expression, and not guessed.

Pure functions: the caller passes the argv, the environment and a bounded file reader.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import os
import shlex

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn

DEFAULT_CONFIG = 'gunicorn.conf.py'
# The source of binds a service manager passed as listening sockets (socket_activation).
SOCKET_ACTIVATION = 'listening sockets, passed by socket activation'
COMMAND_LINE, ENV_ARGS, DEFAULT = 'command line', 'GUNICORN_CMD_ARGS', 'default'

# The config file's names for the settings we track, and our keys for them (the CLI's names).
CONFIG_NAMES = {
    'bind': 'bind', 'workers': 'workers', 'worker_class': 'worker_class', 'threads': 'threads',
    'worker_connections': 'worker_connections', 'timeout': 'timeout', 'graceful_timeout': 'graceful_timeout',
    'keepalive': 'keepalive', 'preload_app': 'preload', 'chdir': 'chdir', 'daemon': 'daemon',
    'pidfile': 'pidfile', 'errorlog': 'error_logfile', 'accesslog': 'access_logfile', 'loglevel': 'loglevel',
    'capture_output': 'capture_output', 'user': 'user', 'group': 'group', 'raw_env': 'raw_env',
    'wsgi_app': 'app', 'proc_name': 'proc_name',
}
# gunicorn's defaults for the settings gunicorn.DEFAULTS does not carry (gunicorn/config.py).
MORE_DEFAULTS = {'threads': 1, 'worker_connections': 1000, 'graceful_timeout': 30, 'keepalive': 2,
                 'loglevel': 'info', 'capture_output': False, 'error_logfile': '-', 'access_logfile': None,
                 'pidfile': None, 'raw_env': [], 'chdir': None, 'user': None, 'group': None, 'proc_name': None,
                 'app': None}
_LISTS = ('bind', 'raw_env')
_INTS = ('workers', 'threads', 'worker_connections', 'timeout', 'graceful_timeout', 'keepalive')
_BOOLS = ('preload', 'daemon', 'capture_output')


class Computed(Exception):
    """A config value that cannot be known without running the file."""


def explicit_args(argv):
    """The settings an argv (or GUNICORN_CMD_ARGS) sets itself, without gunicorn's defaults."""
    parsed = gunicorn.parse_args(argv)
    return dict((key, value) for key, value in parsed.items() if value is not None)


def env_args(environ):
    """The settings GUNICORN_CMD_ARGS sets; a value that does not split like a shell would is ignored by
    gunicorn too (it raises at start), so it is reported, not parsed."""
    text = (environ or {}).get('GUNICORN_CMD_ARGS') or ''
    try:
        return explicit_args(['gunicorn'] + shlex.split(text)), None
    except ValueError as e:
        return {}, 'GUNICORN_CMD_ARGS does not parse (%s)' % e


def config_path(cli, from_env, cwd, exists=os.path.isfile):
    """Which config file gunicorn loads: -c, else --config in GUNICORN_CMD_ARGS, else ./gunicorn.conf.py."""
    chosen = cli.get('config') or from_env.get('config')
    if chosen:
        if chosen.startswith('python:'):
            return chosen        # a module on sys.path: not read (it would have to be imported)
        chosen = chosen[len('file:'):] if chosen.startswith('file:') else chosen
        return chosen if os.path.isabs(chosen) else os.path.join(cwd or '/', chosen)
    default = os.path.join(cwd or '/', DEFAULT_CONFIG)
    return default if cwd and exists(default) else None


def read_config(text, path, environ):
    """A config file's source -> ({key: value}, {key: 'config file PATH:LINE'}, {key: expression}).

    Only module-level assignments count; one under `if`/`try`/`for` depends on running the file and is
    reported as computed. Earlier module-level names can be used by later ones, as in the file.
    Raises ValueError when the file is not valid Python (gunicorn would refuse to start)."""
    values, sources, computed = {}, {}, {}
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as e:
        raise ValueError('it does not parse: %s (line %s)' % (e.msg, e.lineno))
    names = {}
    for node in tree.body:
        for target, value_node, line in _assignments(node):
            key = CONFIG_NAMES.get(target)
            where = '%s:%d' % (path, line)
            try:
                value = _evaluate(value_node, names, environ)
                names[target] = value
            except Computed as e:
                names.pop(target, None)
                if key:
                    values.pop(key, None)
                    computed[key] = '%s (%s)' % (_source(text, value_node), e) if str(e) else _source(text, value_node)
                    sources[key] = 'config file %s' % where
                continue
            if key:
                values[key] = value
                computed.pop(key, None)
                sources[key] = 'config file %s' % where
        for target, line in _conditional_targets(node):
            key = CONFIG_NAMES.get(target)
            if key:
                values.pop(key, None)
                computed[key] = 'set under a condition at line %d' % line
                sources[key] = 'config file %s:%d' % (path, line)
    return values, sources, computed


def _assignments(node):
    """(name, value node, line) of a module-level `name = value` / `name: T = value` / `a = b = value`."""
    if isinstance(node, ast.Assign):
        return [(t.id, node.value, node.lineno) for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
        return [(node.target.id, node.value, node.lineno)]
    return []


def _conditional_targets(node):
    """Names assigned inside a compound statement at module level (if/try/for/with)."""
    if not isinstance(node, (ast.If, ast.Try, ast.For, ast.While, ast.With)):
        return []
    return [(t.id, inner.lineno) for inner in ast.walk(node) if isinstance(inner, (ast.Assign, ast.AugAssign))
            for t in (inner.targets if isinstance(inner, ast.Assign) else [inner.target]) if isinstance(t, ast.Name)]


def _source(text, node):
    segment = ast.get_source_segment(text, node) if hasattr(ast, 'get_source_segment') else None
    return ' '.join((segment or ast.dump(node)).split())


def _is_environ(node):
    """`os.environ`"""
    return isinstance(node, ast.Attribute) and node.attr == 'environ' and isinstance(node.value, ast.Name) \
        and node.value.id == 'os'


def _env_lookup(args, environ, names):
    key = _evaluate(args[0], names, environ)
    if key in environ:
        return environ[key]
    if len(args) > 1:
        return _evaluate(args[1], names, environ)
    raise Computed('%s is not set in the service environment' % key)


def _call(node, names, environ):
    func, args = node.func, node.args
    if node.keywords:
        raise Computed('')
    if isinstance(func, ast.Attribute) and func.attr == 'get' and _is_environ(func.value) and args:
        return _env_lookup(args, environ, names)
    if isinstance(func, ast.Attribute) and func.attr == 'getenv' and isinstance(func.value, ast.Name) \
            and func.value.id == 'os' and args:
        return _env_lookup(args, environ, names) if len(args) > 1 or _evaluate(args[0], names, environ) in environ \
            else None
    if isinstance(func, ast.Name) and func.id in ('int', 'str', 'bool') and len(args) == 1:
        converter = {'int': int, 'str': str, 'bool': bool}[func.id]
        try:
            return converter(_evaluate(args[0], names, environ))
        except (TypeError, ValueError) as e:
            raise Computed('%s() fails: %s' % (func.id, e))
    if isinstance(func, ast.Attribute) and func.attr == 'format' and isinstance(func.value, ast.Constant):
        return func.value.value.format(*[_evaluate(a, names, environ) for a in args])
    raise Computed('')


def _binop(node, names, environ):
    left, right = _evaluate(node.left, names, environ), _evaluate(node.right, names, environ)
    try:
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Mod) and isinstance(left, str):
            return left % (tuple(right) if isinstance(right, list) else right)
    except (TypeError, ValueError) as e:
        raise Computed(str(e))
    raise Computed('')


def _evaluate(node, names, environ):
    """The value of a small, side-effect-free subset of Python; anything else raises Computed."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_evaluate(item, names, environ) for item in node.elts]
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise Computed('')
    if isinstance(node, ast.Subscript) and _is_environ(node.value):
        index = node.slice.value if isinstance(node.slice, getattr(ast, 'Index', ())) else node.slice
        return _env_lookup([index], environ, names)
    if isinstance(node, ast.JoinedStr):
        return ''.join(str(_evaluate(v.value if isinstance(v, ast.FormattedValue) else v, names, environ))
                       for v in node.values)
    if isinstance(node, ast.BinOp):
        return _binop(node, names, environ)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand, names, environ)
    if isinstance(node, ast.Call):
        return _call(node, names, environ)
    raise Computed('')


def _normalize(key, value):
    """A config value as gunicorn would take it: a bind string becomes a list, '4' an int, 'True' a bool."""
    if key in _LISTS:
        return [value] if isinstance(value, str) else list(value or [])
    if key in _INTS:
        try:
            return int(value)
        except (TypeError, ValueError):
            return value
    if key in _BOOLS and isinstance(value, str):
        return value.strip().lower() in ('1', 'true', 'yes', 'on')
    if key == 'worker_class':
        return gunicorn.normalize_worker_class(value)
    return value


def effective(argv, environ, cwd, read_text):
    """Settings of a gunicorn started with `argv` in `cwd` with `environ`.

    `read_text(path)` returns the file's text or raises OSError/ValueError (a bounded reader).
    Returns {'settings', 'sources', 'computed', 'config_file', 'problems'}: a setting in `computed` (its
    expression and why it cannot be known) has the value None in `settings`."""
    cli = explicit_args(argv)
    from_env, problem = env_args(environ)
    problems = [problem] if problem else []
    path = config_path(cli, from_env, cwd)
    from_file, file_sources, computed = {}, {}, {}
    if path and path.startswith('python:'):
        problems.append('config %s is a Python module: its settings are not read' % path)
    elif path:
        try:
            from_file, file_sources, computed = read_config(read_text(path), path, environ or {})
        except (OSError, ValueError) as e:
            problems.append('config file %s cannot be read: %s' % (path, e))
    settings = dict(gunicorn.DEFAULTS, bind=list(gunicorn.DEFAULTS['bind']), **MORE_DEFAULTS)
    settings['raw_env'] = []
    sources = dict((key, DEFAULT) for key in settings)
    for key in computed:                     # known only by running the file: no value, never a guess
        settings[key], sources[key] = None, file_sources[key]
    for layer, source in ((from_file, None), (from_env, ENV_ARGS), (cli, COMMAND_LINE)):
        for key, value in layer.items():
            if key != 'config':
                settings[key] = _normalize(key, value)
                sources[key] = source or file_sources[key]
                if source:
                    computed.pop(key, None)  # a later source overrides what the file computes
    return {'settings': settings, 'sources': sources, 'computed': computed, 'config_file': path,
            'problems': problems}


# --- what the settings mean -----------------------------------------------------------------------------------
TITLE_ROLES = ('master', 'worker')


def process_title(argv):
    """setproctitle's `gunicorn: master [NAME]` (one argument, or split at spaces) -> (role, NAME); else None.
    NAME is the app spec unless `proc_name` / `-n` sets another."""
    text = ' '.join(argv or [])
    if not text.startswith('gunicorn: '):
        return None
    role, dummy, rest = text[len('gunicorn: '):].strip().partition(' ')
    rest = rest.strip()
    if role not in TITLE_ROLES and not role.startswith('worker'):
        return None
    name = rest[1:-1] if rest.startswith('[') and rest.endswith(']') else rest
    return ('master' if role == 'master' else 'worker'), name or None


def socket_bind(address):
    """A listening socket's address (psutil laddr: (host, port) or a unix path) -> a gunicorn bind spec."""
    if isinstance(address, str):
        return 'unix:%s' % address
    host, port = address[0], address[1]
    return '[%s]:%d' % (host, port) if ':' in host else '%s:%d' % (host, port)


def concurrency(settings):
    """How many calls (requests, open WebSockets) the master serves at once -> (number or None, the settings that say
    so, e.g. '-k gthread -w 2 --threads 8 (2 x 8)')."""
    workers = settings.get('workers')
    worker_class = settings.get('worker_class') or 'sync'
    if not isinstance(workers, int):
        return None, 'workers computed by the config file (not known)'
    threads = settings.get('threads') or 1
    if runs_as_gthread(settings):
        # gunicorn runs a sync worker with --threads > 1 as gthread (gunicorn/config.py worker_class)
        return workers * threads, '-k %s -w %d --threads %d (%d x %d)' % (worker_class, workers, threads, workers, threads)
    if worker_class in ('eventlet', 'gevent'):
        connections = settings.get('worker_connections') or MORE_DEFAULTS['worker_connections']
        return workers * connections, '-k %s -w %d --worker-connections %d (%d x %d)' % (
            worker_class, workers, connections, workers, connections)
    if worker_class == 'sync':
        return workers, '-k sync -w %d' % workers
    return None, '-k %s -w %d (its concurrency is not known)' % (worker_class, workers)


def _s(number):
    return '' if number == 1 else 's'


def runs_as_gthread(settings):
    """gunicorn swaps the sync worker for gthread when threads > 1."""
    return settings.get('worker_class') == 'gthread' or (
        settings.get('worker_class') == 'sync' and (settings.get('threads') or 1) > 1)


OPTIONS = {'bind': '-b', 'timeout': '--timeout', 'workers': '-w', 'worker_class': '-k', 'threads': '--threads',
           'error_logfile': '--error-logfile'}


def where_to_change(key, source, config_value, cli_value, runner=None, env_file=None, old=None):
    """How a user changes setting `key`, which came from `source` (see effective()), to a new value: a clause
    for a remedy that names the place: the config file and line, GUNICORN_CMD_ARGS and where it is set, or the
    runner's command line (unit ExecStart=, supervisord command=). `config_value` is the Python to write in a config
    file, `cli_value` the option's value; `old` the value now (named in "replace ... with ...")."""
    source = source or DEFAULT
    option = OPTIONS.get(key, '--' + key.replace('_', '-'))
    if source.startswith('config file '):
        name = [n for n, k in CONFIG_NAMES.items() if k == key]
        return 'in the %s set `%s = %s`' % (source, name[0] if name else key, config_value)
    if source == ENV_ARGS:
        return 'in GUNICORN_CMD_ARGS (set in %s) %s' % (where_env_is_set(runner, env_file), _replace(option, old, cli_value))
    if source == COMMAND_LINE:
        return 'in %s %s' % (runner_command(runner), _replace(option, old, cli_value))
    if key == 'bind' and source.startswith(SOCKET_ACTIVATION):
        return _socket_unit_change(runner, cli_value)
    return 'in %s add %s %s' % (runner_command(runner), option, cli_value)


def socket_activation(environ, pid):
    """How many listening sockets a service manager passed to master `pid` (systemd socket activation: LISTEN_FDS,
    with LISTEN_PID its pid, as gunicorn's systemd.listen_fds checks); gunicorn then listens on exactly those and
    ignores its bind setting. 0 without. /proc/PID/environ keeps both after gunicorn unsets them."""
    try:
        fds, owner = int(environ.get('LISTEN_FDS') or 0), int(environ.get('LISTEN_PID') or 0)
    except ValueError:
        return 0
    return fds if fds > 0 and owner == pid else 0


def control_socket(address, argv):
    """Whether a listening address is gunicorn's control socket (gunicorn 25.1+, for gunicornc; never served):
    the --control-socket on the command line, else its default name gunicorn.ctl."""
    if not isinstance(address, str):
        return False
    named = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == '--control-socket'] + \
        [arg.split('=', 1)[1] for arg in argv if arg.startswith('--control-socket=')]
    return address in named or (not named and os.path.basename(address) == 'gunicorn.ctl')


def _socket_unit_change(runner, address):
    """Where the sockets of a socket-activated master are set: its -b or bind would change nothing."""
    unit = (runner or {}).get('detail') if (runner or {}).get('kind') == 'systemd' else None
    where = 'ListenStream= of the socket unit that activates %s (%s.socket unless its Sockets= names another; then ' \
        'systemctl daemon-reload and restart the socket and the service)' % (unit, unit.rsplit('.', 1)[0]) if unit else \
        'the socket activator that starts it (ListenStream= of its systemd .socket unit, or systemd-socket-activate -l)'
    return 'gunicorn listens on the sockets socket activation passes it (LISTEN_FDS) and ignores -b and bind: listen ' \
        'on %s in %s' % (address, where)


def _replace(option, old, new):
    return 'replace %s %s with %s %s' % (option, old, option, new) if old else 'set %s %s' % (option, new)


def _program(runner):
    """The supervisord program a runner record names ([program:NAME]), else a description."""
    name = runner.get('program')
    return '[program:%s]' % name if name else 'the supervisord program that runs it'


def where_env_is_set(runner=None, env_file=None):
    """Where a variable of the service's environment (PORT, GUNICORN_CMD_ARGS, ...) is set, for a remedy: the env
    file given (doctor_env_file), else the place the master's runner takes its environment from."""
    if env_file:
        return env_file
    kind = (runner or {}).get('kind')
    detail = (runner or {}).get('detail') or ''
    if kind == 'systemd':
        return ('Environment= (or the EnvironmentFile= it reads) of the unit %s (then systemctl daemon-reload and '
                'restart)' % detail)
    if kind == 'supervisord':
        return 'environment= of %s (then supervisorctl update and restart)' % _program(runner)
    if kind in ('shell', 'shell_loop', 'cron'):
        return 'the environment of the %s that starts it (%s): export it there' % (kind.replace('_', ' '), detail[:120])
    if runner:
        return 'the environment gunicorn is started with (export it in the script that starts it)'
    return 'the service environment (doctor_env_file, the unit\'s Environment=, the supervisord program\'s environment=)'


def runner_command(runner):
    """Where the command line of a master's runner is written."""
    kind = (runner or {}).get('kind')
    detail = (runner or {}).get('detail') or ''
    if kind == 'systemd':
        return 'ExecStart= of the unit %s (then systemctl daemon-reload and restart)' % detail
    if kind == 'supervisord':
        return 'command= of %s (then supervisorctl update)' % _program(runner)
    if kind in ('shell', 'shell_loop', 'cron'):
        return 'the command line of the %s that starts it (%s)' % (kind.replace('_', ' '), detail[:120])
    return 'the command line that starts gunicorn'
