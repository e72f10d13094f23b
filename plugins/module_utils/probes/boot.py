# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""boot layer: make a silent crash show itself (runbook section 2) without touching the live service.

- dry_import: import the app in its own interpreter, time it, GET healthz through test_client.
- preload_boot: `gunicorn --preload -k sync` on a free spare loopback port until `Listening at`
  and a 200, then stop its whole session.
Both run the app's code, confined by app_runner: as the service's user, with its environment only.
- scan_dev_server_calls: `app.run()` / `socketio.run()` reachable at import time (ast).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import os
import socket
import threading
import time

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import app_runner
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import safe_read
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import dry_import
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import healthz as healthz_probe

OUTPUT_LINES_KEPT = 40


def run_dry_import(python, chdir, app, healthz_path, env, timeout, psutil=None, ident=None, import_limit=None, stop=None):
    """-> facts of the dry import (see dry_import.SCRIPT), plus `timed_out`, the raw output tail and `run_as`.
    It runs confined (app_runner): as `ident` (the service's user), with the service's environment `env`.

    `import_limit` (seconds, why): the service's own --timeout. An import still running that long is already a slow
    boot: it is stopped then (`over_limit`), not after the whole `timeout`. `stop` (an Event): set by the caller when
    other evidence already proves the boot slow (a worker of the service booting for longer than its timeout): an
    import still running then is stopped (`stopped`)."""
    module, variable = gunicorn.split_app_spec(app)
    marks = {}

    def mark(line):
        if line in (dry_import.IMPORTING, dry_import.IMPORTED):
            marks.setdefault(line, time.time())

    run, why = app_runner.open_run(ident, env, timeout, psutil, on_line=mark)
    if run is None:
        return _not_started(ident, 'OSError', why)
    with run:
        try:
            run.start([python, '-c', dry_import.SCRIPT, module, variable, healthz_path], cwd=chdir)
        except OSError as e:
            return _not_started(run.ident, type(e).__name__, _cannot_start(run, python, e))
        over_limit = _wait_import(run, marks, import_limit[0] if import_limit else None, stop)
        stopped = stop is not None and stop.is_set() and run.running() and dry_import.IMPORTED not in marks
        timed_out = (over_limit or run.running()) and not stopped
        run.stop(grace=1.0)  # also what the app started at import and left running
    text = '\n'.join(run.lines)
    result = dry_import.parse_output(text) or {'ok': False}
    result['timed_out'] = timed_out
    if stopped:
        result.update(stopped=True, import_seconds=round(time.time() - marks.get(dry_import.IMPORTING, run.started), 2))
    elif over_limit:
        result.update(over_limit=True, limit=import_limit[0], limit_source=import_limit[1],
                      import_seconds=round(time.time() - marks[dry_import.IMPORTING], 2))
    result['seconds'] = round(time.time() - run.started, 2)
    result['exit_code'] = run.exit_code
    result['output_tail'] = [line for line in text.splitlines() if not line.startswith(dry_import.MARKERS)][-15:]
    result['run_as'] = app_runner.describe(run.ident)
    return result


def _wait_import(run, marks, limit, stop=None):
    """Until the run exits, its deadline passes or `stop` is set -> True when it was stopped early: its import had run
    for `limit` seconds and not returned."""
    while run.running() and time.time() < run.deadline and not (stop is not None and stop.is_set()):
        began = marks.get(dry_import.IMPORTING)
        if limit and began and dry_import.IMPORTED not in marks and time.time() >= began + limit:
            return True
        time.sleep(app_runner.POLL)
    return False


def _cannot_start(run, python, error):
    """The interpreter could not be started as the service user (that user could not start the service either)."""
    return 'cannot start %s as %s: %s' % (python, run.ident['name'], getattr(error, 'strerror', None) or error)


def _not_started(ident, error_type, message):
    return {'ok': False, 'timed_out': False, 'seconds': 0.0, 'exit_code': None, 'output_tail': [],
            'run_as': app_runner.describe(ident or app_runner.prober_identity()),
            'error': {'type': error_type, 'message': message, 'stage': 'start', 'frames': [],
                      'missing_env': None, 'module_not_found': None}}


def free_port(host='127.0.0.1'):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


# The spare-port boot's configuration file: empty, so nothing of the app's (./gunicorn.conf.py, its hooks,
# daemon, pidfile) is loaded.
OWN_CONFIG = '# sre.gunicorn_doctor: the spare-port boot loads no configuration of the app\n'


def preload_boot(python, chdir, app, healthz_path, env, timeout, gunicorn_version=None, psutil=None,
                 worker_class='sync', extra_env=None, ident=None):
    """Start `gunicorn --preload -k sync` on a spare port, wait for `Listening at` and a 200, stop it.

    Runs confined (app_runner: as `ident`, the service's user, with the service's environment `env`) and with a
    configuration of its own: `-c` an empty file and `--pid` in the private directory, no GUNICORN_CMD_ARGS, never
    --daemon. Waits on events (output lines, process exit, an answered request), bounded by `timeout`.
    `worker_class` and `extra_env` (added to `env`) let the eventlet layer boot `-k eventlet` the same way.
    """
    port = free_port()
    seen = {'listening': threading.Event(), 'dev_server': threading.Event()}

    def watch(line):
        if 'Listening at:' in line:
            seen['listening'].set()
        if '* Running on' in line:
            seen['dev_server'].set()

    run, why = app_runner.open_run(ident, dict(env, **(extra_env or {})), timeout, psutil, on_line=watch)
    if run is None:
        return {'port': port, 'command': 'gunicorn --preload -k %s %s' % (worker_class, app), 'listening': False,
                'healthz_status': None, 'listen_seconds': None, 'exited': True, 'exit_code': None, 'timed_out': False,
                'dev_server': False, 'seconds': 0.0, 'output_tail': [why], 'events': gunicorn.scan_log([]),
                'run_as': app_runner.describe(ident or app_runner.prober_identity())}
    with run:
        argv = [python, '-m', 'gunicorn', '-c', run.write('gunicorn.conf.py', OWN_CONFIG),
                '--pid', os.path.join(run.home, 'gunicorn.pid'), '--preload', '-k', worker_class, '-w', '1',
                '-b', '127.0.0.1:%d' % port, '--timeout', str(max(int(timeout), 1)), '--log-level', 'debug',
                '--capture-output', '--error-logfile', '-', '--access-logfile', '-']
        if _version_at_least(gunicorn_version, 25):
            argv.append('--no-control-socket')  # never take over the live master's control socket
        argv.append(app)
        result = {'port': port, 'command': ' '.join(argv[1:]).replace(run.home, '<private dir>'), 'listening': False,
                  'healthz_status': None, 'run_as': app_runner.describe(run.ident)}
        try:
            run.start(argv, cwd=chdir)
        except OSError as e:
            run.lines.append(_cannot_start(run, python, e))
            result.update(exited=True, dev_server=False, timed_out=False, listen_seconds=None)
        else:
            _watch_boot(run, seen, port, healthz_path, result)
        run.stop(grace=5.0)
    result['exit_code'] = run.exit_code if result['exited'] else None
    result['seconds'] = round(time.time() - run.started, 2)
    result['output_tail'] = list(run.lines)[-OUTPUT_LINES_KEPT:]
    result['events'] = gunicorn.scan_log(list(run.lines))
    return result


def _watch_boot(run, seen, port, healthz_path, result):
    """Until `Listening at` and an answer on healthz, an exit, a dev server or the deadline -> into `result`."""
    while time.time() < run.deadline and run.running() and not seen['dev_server'].is_set():
        if seen['listening'].wait(0.1):
            break
    result['listening'] = seen['listening'].is_set()
    result['listen_seconds'] = round(time.time() - run.started, 2) if result['listening'] else None
    while result['listening'] and time.time() < run.deadline and run.running():
        answer = healthz_probe.sample(port, healthz_path, timeout=max(0.5, min(3.0, run.remaining())))
        if answer['status'] is not None:
            result['healthz_status'] = answer['status']
            break
        time.sleep(0.1)  # the worker is still booting; poll
    result['exited'] = not run.running()
    result['dev_server'] = seen['dev_server'].is_set()
    result['timed_out'] = not result['exited'] and result['healthz_status'] is None and not result['dev_server']


def _version_at_least(version, major):
    try:
        return int(str(version).split('.', maxsplit=1)[0]) >= major
    except ValueError:
        return False


# --- static scan --------------------------------------------------------------------------------
DEV_SERVER_OWNERS = ('app', 'application', 'socketio', 'sio', 'server')


def _is_main_guard(node):
    """`if __name__ == "__main__":`"""
    test = node.test
    if not isinstance(test, ast.Compare) or len(test.comparators) != 1:
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == '__name__']
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == '__main__']
    return bool(names and consts)


def _import_time_calls(body):
    """Call nodes executed when the module is imported (not in defs, classes or a __main__ guard)."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.If) and _is_main_guard(node):
            yield from _import_time_calls(node.orelse)
            continue
        for dummy, value in ast.iter_fields(node):
            items = value if isinstance(value, list) else [value]
            if items and isinstance(items[0], ast.stmt):
                yield from _import_time_calls(items)
            elif items and isinstance(items[0], ast.excepthandler):
                for handler in items:
                    yield from _import_time_calls(handler.body)
            else:
                for item in items:
                    if isinstance(item, ast.AST):
                        yield from _calls_in(item)


def _calls_in(node):
    """Calls inside an expression, except in lambdas (they run later, if ever)."""
    stack = [] if isinstance(node, ast.Lambda) else [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Call):
            yield current
        stack.extend(child for child in ast.iter_child_nodes(current) if not isinstance(child, ast.Lambda))


def scan_source(source, filename='<app>'):
    """Python source -> [dict(file, line, code)] of dev-server starts reachable at import."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as e:
        return [{'file': filename, 'line': e.lineno or 0, 'code': 'SyntaxError: %s' % e.msg, 'syntax_error': True}]
    found = []
    for call in _import_time_calls(tree.body):
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr == 'run' and isinstance(func.value, ast.Name) \
                and func.value.id in DEV_SERVER_OWNERS:
            found.append({'file': filename, 'line': call.lineno, 'code': '%s.run(...)' % func.value.id})
        elif isinstance(func, ast.Name) and func.id == 'run_simple':
            found.append({'file': filename, 'line': call.lineno, 'code': 'run_simple(...)'})
    return found


def app_source_files(chdir, app, limit=400):
    """The .py files of the app's top-level package (or its single module), under chdir."""
    top = gunicorn.split_app_spec(app)[0].split('.')[0]
    package = os.path.join(chdir, top)
    if os.path.isdir(package):
        files = []
        for root, dirs, names in os.walk(package):
            dirs[:] = [d for d in dirs if not d.startswith('.') and d not in ('__pycache__', 'node_modules', 'tests')]
            files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith('.py'))
            if len(files) >= limit:
                break
        return files[:limit]
    single = os.path.join(chdir, top + '.py')
    return [single] if os.path.isfile(single) else []


def scan_dev_server_calls(chdir, app):
    found = []
    for path in app_source_files(chdir, app):
        done = safe_read.read_bytes(path, safe_read.SOURCE_MAX, follow=True)   # no FIFO, device or giant
        if done.data is None or done.truncated:
            continue
        source = done.data
        for hit in scan_source(source, path):
            hit['file'] = os.path.relpath(path, chdir)
            found.append(hit)
    return found
