# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""eventlet layer: can the eventlet worker run here? (runbook section 4)

Observes only; decides nothing (judge_eventlet does). Cheap first: whether the service uses eventlet
at all (running master, its log, its runner's config, doctor_worker_class); only then the versions
(from the dry import, read in the app's own interpreter), the EVENTLET_* environment as the running
master has it and as its runner will set it next start, gevent/uvloop beside eventlet, where
eventlet.monkey_patch() runs (ast scan + the traced dry import), eventlet lines of the log, and -
when the evidence asks for it - a real `-k eventlet` boot on a free spare loopback port.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import json
import os
import re
import select

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import app_runner
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import eventlet_compat, gunicorn, service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import safe_read
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import boot, logfile

ENV_VARS = ('EVENTLET_NO_GREENDNS', 'EVENTLET_HUB')
_WORKER_OPT = re.compile(r'(?:^|\s)(?:-k\s*|--worker-class(?:=|\s+))["\']?([\w.:]+)')
_CLASS_URI = re.compile(r"^Error: class uri '(?P<uri>[^']*)' invalid or not found")
# Exception lines of the log (or of the spare-port boot) and what they mean for this layer.
_LINE_KINDS = (
    ('hub_invalid', re.compile(r"No module named 'eventlet\.hubs\.|selected hub is not available|Need to specify a hub")),
    ('incompatible', re.compile(r"eventlet worker requires eventlet|cannot import name 'ALREADY_HANDLED'|"
                                r"Entry point \('gunicorn\.workers', 'eventlet'\) not found|cannot set 'is_timeout' attribute|"
                                r"start_joinable_thread|No module named '(?:eventlet|greenlet|distutils)'")),
    ('known_bad', re.compile(r"KeyError: 'eventlet\.set_idle'")),
    ('async_conflict', re.compile(r'gevent|uvloop')),
    ('greendns', re.compile(r'greendns|No module named .dns|dns\.\w+Error')),
)
_DEPRECATION = re.compile(r'The eventlet worker is DEPRECATED|EventletDeprecationWarning')
_LOG_PREFIX = re.compile(r'^\[[^\]]+\] \[\d+\] \[[A-Z]+\] ')
HARMLESS_BEFORE_PATCH = ('__future__', 'eventlet', 'os', 'sys')
TAIL_BYTES = 512 << 10


# --- where the worker class comes from --------------------------------------------------------------
def worker_class_in(command):
    """`... -k eventlet ...` / `--worker-class=eventlet` in a command string -> 'eventlet'; None when absent."""
    found = _WORKER_OPT.findall(command or '')
    return gunicorn.normalize_worker_class(found[-1]) if found else None


def config_worker_class(path):
    """`worker_class = "eventlet"` in a gunicorn config file (ast, never executed) -> value or None."""
    text = service_env.read_text(path) if path else None
    if not text:
        return None
    try:
        tree = ast.parse(text, path)
    except SyntaxError:
        return None
    value = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            if any(isinstance(t, ast.Name) and t.id == 'worker_class' for t in node.targets):
                value = gunicorn.normalize_worker_class(node.value.value)
    return value


def _same_dir(path, chdir):
    return bool(path) and os.path.realpath(path) == os.path.realpath(chdir)


def runner_configs(app, chdir, env_file, env_file_env, unit_dirs=None, conf_globs=None):
    """What the runner will start next time: the env file, and the systemd units and supervisord programs
    that run `app` in `chdir` (belonging needs proof: another checkout of the app is another service)
    -> [{'source', 'kind', 'env' (EVENTLET_* and GUNICORN_CMD_ARGS only), 'worker_class'}]."""
    found = []
    if env_file and env_file_env is not None:
        found.append({'source': env_file, 'kind': 'env file', 'env': _eventlet_env(env_file_env),
                      'worker_class': worker_class_in(env_file_env.get('GUNICORN_CMD_ARGS'))})
    units = service_env.find_unit_environments(app, unit_dirs) if unit_dirs else service_env.find_unit_environments(app)
    programs_found = service_env.find_supervisord_environments(app, conf_globs) if conf_globs else \
        service_env.find_supervisord_environments(app)
    for path, env in units:
        text = service_env.read_text(path) or ''
        dirs = [l.split('=', 1)[1].strip().lstrip('-') for l in text.splitlines() if l.strip().startswith('WorkingDirectory=')]
        if not any(_same_dir(d, chdir) for d in dirs) and chdir not in text:
            continue
        starts = [l.split('=', 1)[1] for l in text.splitlines() if l.strip().startswith('ExecStart=') and app in l]
        found.append({'source': path, 'kind': 'systemd unit', 'env': _eventlet_env(env),
                      'worker_class': worker_class_in(' '.join(starts)) or worker_class_in(env.get('GUNICORN_CMD_ARGS'))})
    for where, env in programs_found:
        path, dummy, program = where.partition(' [program:')
        programs = service_env.parse_supervisord_programs(service_env.read_text(path) or '')
        command = programs.get(program.rstrip(']'), {}).get('command', '')
        if not _same_dir(programs.get(program.rstrip(']'), {}).get('directory'), chdir) and chdir not in command:
            continue
        found.append({'source': where, 'kind': 'supervisord program', 'env': _eventlet_env(env),
                      'worker_class': worker_class_in(command) or worker_class_in(env.get('GUNICORN_CMD_ARGS'))})
    return found


def _eventlet_env(env):
    return dict((k, env[k]) for k in ENV_VARS + ('GUNICORN_CMD_ARGS',) if k in (env or {}))


def worker_class_sources(params, masters, master_envs, run_lines, runners):
    """Every place that says which worker class the service runs or will run."""
    sources = []
    for m in masters:   # its effective worker class (process.master_settings): argv, GUNICORN_CMD_ARGS, config
        wc = m['settings']['worker_class']
        if wc:   # None: its config file computes it; the log's "Using worker" line still tells
            where = (m.get('settings_sources') or {}).get('worker_class') or 'command line'
            sources.append({'source': 'master %d (%s)' % (m['pid'], where), 'worker_class': wc})
    for line in run_lines:
        m = re.search(r'\] Using worker: (\S+)$', line) or _CLASS_URI.match(line)
        if m:
            sources.append({'source': 'the gunicorn log ("%s")' % _LOG_PREFIX.sub('', line.strip())[:160],
                            'worker_class': gunicorn.normalize_worker_class(m.group(1))})
    for r in runners:
        if r['worker_class']:
            sources.append({'source': '%s (%s)' % (r['source'], r['kind']), 'worker_class': r['worker_class']})
    if params.get('worker_class') not in (None, '', 'auto'):
        sources.append({'source': 'doctor_worker_class', 'worker_class': params['worker_class']})
    return sources


# --- the log -------------------------------------------------------------------------------------------
def scan_lines(lines):
    """Eventlet-related lines: the exception lines by kind, the deprecation notices, WORKER TIMEOUTs."""
    found = {'errors': [], 'deprecation': [], 'worker_timeouts': 0, 'class_uri': None}
    for line in lines:
        text = line.strip()
        if _CLASS_URI.match(text):
            found['class_uri'] = text
        if _DEPRECATION.search(text):
            found['deprecation'].append(_LOG_PREFIX.sub('', text)[:200])
        if 'WORKER TIMEOUT' in text:
            found['worker_timeouts'] += 1
        m = gunicorn.RUN_EXCEPTION.match(text.rstrip(']'))
        if m:
            for kind, pattern in _LINE_KINDS:
                if pattern.search(text):
                    found['errors'].append({'kind': kind, 'line': text.lstrip('[')[:300]})
                    break
    found['deprecation'] = found['deprecation'][-2:]
    found['errors'] = found['errors'][-6:]
    return found


# --- monkey_patch placement (static) ---------------------------------------------------------------
def _module_names(node):
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return ['.' * node.level + (node.module or '')]
    return []


def _patch_aliases(tree):
    """Names bound to eventlet's monkey_patch by `from eventlet(.patcher) import monkey_patch [as x]`."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ('eventlet', 'eventlet.patcher'):
            names.update(a.asname or a.name for a in node.names if a.name == 'monkey_patch')
    return names


def _is_patch_call(node, aliases):
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id in aliases
    if isinstance(func, ast.Attribute) and func.attr == 'monkey_patch':
        base = func.value
        return (isinstance(base, ast.Name) and base.id in ('eventlet', 'patcher')) or \
            (isinstance(base, ast.Attribute) and base.attr == 'patcher')
    return False


def scan_monkey_patch(source, filename='<app>'):
    """Python source -> [dict(file, line, scope, before)] for each eventlet.monkey_patch() call.

    scope: 'module' (runs at import), 'main guard' (only as a script) or 'function NAME';
    before: for module-level calls, the modules this file imports before the call (eventlet, os, sys
    and __future__ excepted) - non-empty means the call is late.
    """
    try:
        tree = ast.parse(source, filename)
    except SyntaxError:
        return []
    aliases = _patch_aliases(tree)
    calls = []
    imported = []

    def visit(body, scope):
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for node in ast.walk(stmt):
                    if _is_patch_call(node, aliases):
                        calls.append({'file': filename, 'line': node.lineno, 'scope': 'function %s' % stmt.name,
                                      'before': None})
                continue
            if isinstance(stmt, ast.If) and boot._is_main_guard(stmt):
                visit(stmt.body, 'main guard')
                visit(stmt.orelse, scope)
                continue
            nested = [v for dummy, v in ast.iter_fields(stmt) if isinstance(v, list) and v and isinstance(v[0], ast.stmt)]
            handlers = getattr(stmt, 'handlers', None) or []
            if nested or handlers:
                for block in nested:
                    visit(block, scope)
                for handler in handlers:
                    visit(handler.body, scope)
                continue
            for node in ast.walk(stmt):
                if _is_patch_call(node, aliases):
                    late = [m for m in imported if m.split('.')[0] not in HARMLESS_BEFORE_PATCH]
                    calls.append({'file': filename, 'line': node.lineno, 'scope': scope,
                                  'before': late if scope == 'module' else None})
            if scope == 'module':
                imported.extend(_module_names(stmt))

    visit(tree.body, 'module')
    return calls


def scan_app_monkey_patch(chdir, app):
    found = []
    for path in boot.app_source_files(chdir, app):
        done = safe_read.read_bytes(path, safe_read.SOURCE_MAX, follow=True)   # no FIFO, device or giant
        if done.data is None or done.truncated:
            continue
        source = done.data
        if b'monkey_patch' not in source:
            continue
        for hit in scan_monkey_patch(source, path):
            hit['file'] = os.path.relpath(path, chdir)
            found.append(hit)
    return found


def entry_file(chdir, app):
    """The file of the app module (AgentLocator.main -> AgentLocator/main.py), relative to chdir."""
    module = gunicorn.split_app_spec(app)[0].replace('.', os.sep)
    for candidate in (module + '.py', os.path.join(module, '__init__.py')):
        if os.path.isfile(os.path.join(chdir, candidate)):
            return candidate
    return None


# --- versions, environment ----------------------------------------------------------------------------
VERSIONS_SCRIPT = r'''
import json, sys
from importlib import metadata
out = {"python": sys.version.split()[0], "versions": {}}
for dist in ("gunicorn", "eventlet", "greenlet", "gevent", "uvloop", "dnspython"):
    try:
        out["versions"][dist] = metadata.version(dist)
    except Exception:
        pass
print(json.dumps(out))
'''


def read_versions(python, chdir, env=None, ident=None, psutil=None, timeout=10):
    """Versions from the app's interpreter when the dry import could not give them (it timed out or was turned
    off). The interpreter runs the venv's code (its .pth files): confined like the dry import (app_runner)."""
    run = app_runner.open_run(ident, env, timeout, psutil)[0]
    if run is None:
        return {'python': None, 'versions': {}}
    with run:
        try:
            run.start([python, '-c', VERSIONS_SCRIPT], cwd=chdir)
        except OSError:
            return {'python': None, 'versions': {}}
        run.wait_exit(run.deadline)
        run.stop()
    for line in reversed(run.lines):
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict) and isinstance(found.get('versions'), dict):
            return found
    return {'python': None, 'versions': {}}


def env_view(source, env):
    return {'source': source, 'EVENTLET_NO_GREENDNS': env.get('EVENTLET_NO_GREENDNS'),
            'EVENTLET_HUB': env.get('EVENTLET_HUB')}


def runner_processes(psutil, restarters):
    """The processes that restart the master (a shell loop, a platform runner): each new master inherits their
    environment and runs their command, so with no master alive (a crash loop) they say what it runs with
    -> [{'pid', 'view' (env view), 'worker_class' (-k in their full command line, or None)}]."""
    found = []
    for r in (restarters or {}).get('runners') or []:
        if not r['pid'] or r['kind'] not in ('shell_loop', 'platform'):
            continue
        env = service_env.read_proc_environ(r['pid'])
        try:
            command = ' '.join(psutil.Process(r['pid']).cmdline())
        except Exception:  # gone or not ours to read
            command = r['command'] or ''
        if env is not None:
            found.append({'pid': r['pid'], 'worker_class': worker_class_in(command), 'view': dict(env_view(
                '/proc/%d/environ (%s pid %d, which restarts the master: %s)' % (
                    r['pid'], r['name'], r['pid'], (r['command'] or '')[:120]), env), runner_pid=r['pid'])})
    return found


def read_environments(context):
    """The environments this layer reads, once (before the stability window: the hub crash ends it at once)
    -> {'masters': {pid: env of each running master}, 'runners': runner_configs(), 'restarters': runner_processes()}."""
    p = context['params']
    masters = context['process']['masters']
    master_envs = dict((m['pid'], service_env.read_proc_environ(m['pid']) or {}) for m in masters)
    # A crash loop's master may be gone before its environ is read: then its runner says what it runs with.
    restarters = [] if any(master_envs.values()) else \
        runner_processes(context['psutil'], context['process'].get('restarters'))
    return {'masters': master_envs, 'restarters': restarters,
            'runners': runner_configs(p['app'], p['chdir'], p.get('env_file'), context.get('env_file_env'))}


def hub_crash(masters, envs, hubs_available=None, platform_select=None):
    """Why no eventlet master of the app can run -> 'EVENTLET_HUB=VALUE in WHERE: WHY', or None. The environment an
    eventlet master runs with holds a hub eventlet cannot load: gunicorn refuses the worker class before its log opens,
    and whatever restarts it starts it again with the same environment - a crash loop whose evidence is all there at
    once (the stability window need not watch it; a spare-port boot with another hub says nothing of it).
    Read from the running -k eventlet masters; when none runs (or none could be read), from what starts the next one:
    a process that restarts the master with -k eventlet in its command, a unit or program that runs -k eventlet.
    `envs`: read_environments()."""
    running = [env_view('/proc/%d/environ (running master %d, -k eventlet)' % (m['pid'], m['pid']), envs['masters'][m['pid']])
               for m in masters if m['settings'].get('worker_class') == 'eventlet' and envs['masters'].get(m['pid'])]
    views = running or [r['view'] for r in envs['restarters'] if r['worker_class'] == 'eventlet'] + \
        [env_view('%s (%s)' % (r['source'], r['kind']), r['env']) for r in envs['runners'] if r['worker_class'] == 'eventlet']
    for view in views:
        why = eventlet_compat.hub_problem(view['EVENTLET_HUB'], hubs_available, platform_select)
        if why:
            return 'EVENTLET_HUB=%s in %s: %s' % (view['EVENTLET_HUB'], view['source'], why)
    return None


def _primary(masters, port):
    for m in masters:
        if any(b.endswith(':%s' % port) for b in m['settings']['bind']):
            return m
    return max(masters, key=lambda m: m['age']) if masters else None


def _boot_env(views):
    """The two variables for the spare-port boot: a valid configured hub (else selects), green DNS off."""
    hub = eventlet_compat.RECOMMENDED_HUB
    for view in views:
        value = (view.get('EVENTLET_HUB') or '').strip()
        if value and eventlet_compat.hub_problem(value) is None and '.' not in value and ':' not in value:
            hub = value
            break
    return {'EVENTLET_NO_GREENDNS': eventlet_compat.GREENDNS_OFF, 'EVENTLET_HUB': hub}


def collect(context):
    """-> facts of the eventlet layer (see judge_eventlet)."""
    p = context['params']
    masters = context['process']['masters']
    master = _primary(masters, context.get('port'))
    envs = context.get('eventlet_envs') or read_environments(context)
    master_envs, runners, restarters = envs['masters'], envs['runners'], envs['restarters']
    lines = logfile.tail_lines(p.get('log_file'), TAIL_BYTES)
    run_lines = gunicorn.current_run(lines, [m['pid'] for m in masters], previous=True)
    sources = worker_class_sources(p, masters, master_envs, run_lines, runners)
    sources += [{'source': 'pid %d, which restarts the master' % r['pid'], 'worker_class': r['worker_class']}
                for r in restarters if r['worker_class']]
    log = scan_lines(run_lines)
    applies = any(s['worker_class'] == 'eventlet' for s in sources)
    settings = None
    if master:
        s = master['settings']
        settings = {'pid': master['pid'], 'worker_class': s['worker_class'], 'workers': s['workers'],
                    'timeout': s['timeout'], 'preload': s['preload'], 'threads': s.get('threads'),
                    'worker_connections': s.get('worker_connections')}
    facts = {'applies': applies, 'worker_class_sources': sources, 'settings': settings,
             'worker_timeouts': log['worker_timeouts'], 'runners': [r['source'] for r in runners]}
    if not applies:
        return facts

    dry = context.get('dry_import') or {}
    read = {'python': dry.get('python'), 'versions': dry.get('versions')} if dry.get('versions') else \
        read_versions(p['python'], p['chdir'], context.get('env'), context.get('identity'), context.get('psutil'))
    versions = dict((k, (read.get('versions') or {}).get(k)) for k in
                    ('gunicorn', 'eventlet', 'greenlet', 'dnspython', 'gevent', 'uvloop'))
    python = read.get('python')
    problems = eventlet_compat.check_versions(python, versions)
    running = [env_view('/proc/%d/environ (running master %d, -k %s)' % (m['pid'], m['pid'], m['settings']['worker_class']),
                        master_envs[m['pid']]) for m in masters if master_envs.get(m['pid'])]
    next_start = [env_view('%s (%s)' % (r['source'], r['kind']), r['env']) for r in runners]
    next_start += [r['view'] for r in restarters]
    traced = dry.get('monkey_patch')
    facts.update({
        'python': python,
        'python_executable': p['python'],
        'versions': versions,
        'problems': problems,
        'recommended_pins': eventlet_compat.recommended_pins(python),
        'pip_command': eventlet_compat.pip_command(p['python'], python),
        'gunicorn_notice': eventlet_compat.deprecation_notice(versions.get('gunicorn')),
        'env': {'running': running, 'next_start': next_start,
                'env_file': p.get('env_file')},
        'hubs_available': dry.get('eventlet_hubs'),
        'platform_select': [n for n in ('epoll', 'kqueue', 'poll') if hasattr(select, n)],
        'conflicts': [{'package': k, 'version': versions[k]} for k in ('gevent', 'uvloop') if versions.get(k)],
        'monkey_patch': {'static': scan_app_monkey_patch(p['chdir'], p['app']), 'entry_file': entry_file(p['chdir'], p['app']),
                         'traced': traced, 'dry_import_ok': bool(dry.get('ok'))},
        'log': log,
        'log_file': p.get('log_file'),
        'stable': context.get('stable'),
    })
    crash = hub_crash(masters, envs, facts['hubs_available'], facts['platform_select'])
    facts.update(_spare_port_boot(context, problems, log, versions, running + next_start, crash))
    return facts


def _spare_port_boot(context, problems, log, versions, views, crash=None):
    """The spare-port boot costs seconds: only when eventlet is in use and the service is not a stable 200, or the
    versions / the log already say eventlet cannot run; never when the service's hub cannot load (`crash`, hub_crash:
    the boot would take another hub and tell nothing of the service). -> {'boot', 'boot_skipped'[, 'boot_off']}"""
    p = context['params']
    failing = [pr for pr in problems if pr['severity'] == 'fail'] or \
        [e for e in log['errors'] if e['kind'] in ('incompatible', 'hub_invalid', 'known_bad', 'async_conflict')]
    if context.get('stable') and not failing:
        return {'boot': None, 'boot_skipped': '/healthz answered a stable 200 and nothing says eventlet cannot run'}
    if p.get('preload_boot') == 'never':  # the user's switch: no spare-port boot of any worker class
        return {'boot': None, 'boot_skipped': 'doctor_preload_boot=never', 'boot_off': True}
    if crash:
        return {'boot': None, 'boot_skipped': '%s - every eventlet master of the app fails on it' % crash}
    extra = _boot_env(views)
    result = boot.preload_boot(p['python'], p['chdir'], p['app'], p['healthz_path'], context['env'],
                               context.get('boot_limit') or p['boot_timeout'], versions.get('gunicorn'), context.get('psutil'),
                               worker_class='eventlet', extra_env=extra, ident=context.get('identity'))
    result['env'] = extra
    errors = [l.strip().lstrip('[').rstrip(']') for l in result['output_tail'] if gunicorn.RUN_EXCEPTION.match(l.strip().rstrip(']'))]
    result['error_line'] = errors[-1] if errors else next(
        (l.strip() for l in reversed(result['output_tail']) if l.startswith('Error: ')), None)
    result['class_uri'] = next((l.strip() for l in result['output_tail'] if _CLASS_URI.match(l.strip())), None)
    return {'boot': result, 'boot_skipped': None}
