# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""boot layer: make a silent crash show itself (runbook section 2) without touching the live service.

- dry_import: import the app in its own interpreter, time it, GET healthz through test_client.
- preload_boot: `gunicorn --preload -k sync` on a free spare loopback port until `Listening at`
  and a 200, then stop it by PID.
- scan_dev_server_calls: `app.run()` / `socketio.run()` reachable at import time (ast).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import os
import socket
import subprocess
import threading
import time

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils import gunicorn, safe_read
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.processes import stop_started
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import dry_import
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import healthz as healthz_probe

OUTPUT_LINES_KEPT = 40


def run_dry_import(python, chdir, app, healthz_path, env, timeout, psutil=None):
    """-> facts of the dry import (see dry_import.SCRIPT), plus `timed_out` and the raw output tail."""
    module, variable = gunicorn.split_app_spec(app)
    env = dict(env, PYTHONDONTWRITEBYTECODE='1')  # read-only: no __pycache__ left in the app
    started = time.time()
    proc = subprocess.Popen([python, '-c', dry_import.SCRIPT, module, variable, healthz_path],
                            cwd=chdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out = proc.communicate(timeout=timeout)[0]
        timed_out = False
    except subprocess.TimeoutExpired:
        stop_started(proc, psutil, grace=1.0)
        out = proc.communicate()[0]
        timed_out = True
    text = out.decode('utf-8', 'replace')
    result = dry_import.parse_output(text) or {'ok': False}
    result['timed_out'] = timed_out
    result['seconds'] = round(time.time() - started, 2)
    result['exit_code'] = proc.returncode
    result['output_tail'] = [line for line in text.splitlines() if not line.startswith(dry_import.MARKER)][-15:]
    return result


def free_port(host='127.0.0.1'):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def preload_boot(python, chdir, app, healthz_path, env, timeout, gunicorn_version=None, psutil=None,
                 worker_class='sync', extra_env=None):
    """Start `gunicorn --preload -k sync` on a spare port, wait for `Listening at` and a 200, stop it.

    Waits on events (output lines, process exit, an answered request), bounded by `timeout`.
    `worker_class` and `extra_env` (added to `env`) let the eventlet layer boot `-k eventlet` the same way.
    """
    port = free_port()
    argv = [python, '-m', 'gunicorn', '--preload', '-k', worker_class, '-w', '1', '-b', '127.0.0.1:%d' % port,
            '--timeout', str(max(int(timeout), 1)), '--log-level', 'debug', '--capture-output',
            '--error-logfile', '-', '--access-logfile', '-']
    if _version_at_least(gunicorn_version, 25):
        argv.append('--no-control-socket')  # never take over the live master's control socket
    argv.append(app)
    env = dict(env, **(extra_env or {}))
    env['PYTHONDONTWRITEBYTECODE'] = '1'
    lines = []
    seen = {'listening': threading.Event(), 'dev_server': threading.Event()}
    started = time.time()
    proc = subprocess.Popen(argv, cwd=chdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)

    def read_output():
        for raw in iter(proc.stdout.readline, b''):
            line = raw.decode('utf-8', 'replace').rstrip('\n')
            lines.append(line)
            if 'Listening at:' in line:
                seen['listening'].set()
            if '* Running on' in line:
                seen['dev_server'].set()

    reader = threading.Thread(target=read_output)
    reader.daemon = True
    reader.start()
    result = {'port': port, 'command': ' '.join(argv[1:]), 'listening': False, 'healthz_status': None}
    try:
        deadline = started + timeout
        while time.time() < deadline and proc.poll() is None and not seen['dev_server'].is_set():
            if seen['listening'].wait(0.1):
                break
        result['listening'] = seen['listening'].is_set()
        result['listen_seconds'] = round(time.time() - started, 2) if result['listening'] else None
        while result['listening'] and time.time() < deadline and proc.poll() is None:
            answer = healthz_probe.sample(port, healthz_path, timeout=max(0.5, min(3.0, deadline - time.time())))
            if answer['status'] is not None:
                result['healthz_status'] = answer['status']
                break
            time.sleep(0.1)  # the worker is still booting; poll
        result['exited'] = proc.poll() is not None
        result['exit_code'] = proc.returncode
        result['timed_out'] = not result['exited'] and result['healthz_status'] is None and not seen['dev_server'].is_set()
        result['dev_server'] = seen['dev_server'].is_set()
    finally:
        stop_started(proc, psutil)
        reader.join(2.0)
    result['seconds'] = round(time.time() - started, 2)
    result['output_tail'] = lines[-OUTPUT_LINES_KEPT:]
    result['events'] = gunicorn.scan_log(lines)
    return result


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
