# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What runs the service now: its manager, its master, who it runs as and the settings stabilize's command keeps
(service_info's answer). service_apply asks it too when it is not given one, so a service pass is one call."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os
import shutil

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn, gunicorn_settings, service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import processes, safe_read, service_user
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import service_control
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import process

# What stabilize's canonical command must keep or override (plan.runner_shape); raw_env is left out (secrets).
SHAPE_SETTINGS = ('bind', 'worker_class', 'workers', 'timeout', 'keepalive', 'daemon', 'loglevel', 'capture_output',
                  'error_logfile', 'access_logfile', 'threads', 'worker_connections', 'graceful_timeout', 'preload',
                  'raw_env')


class NotFound(Exception):
    """The service cannot be taken over as it is; `result` holds what was found until then."""

    def __init__(self, msg, result=None):
        super(NotFound, self).__init__(msg)
        self.result = result or {}


def runner_file(p, found):
    """The service's runner file for the manager found, and its text (a unit with its drop-ins)."""
    manager = found['manager']
    if manager == 'systemd':
        path = os.path.join(p['unit_dir'], p['name'] + '.service')
        texts = [service_env.read_text(f) or '' for f in [path] + sorted(glob.glob(path + '.d/*.conf'))]
        return path, '\n'.join(texts)
    if manager == 'supervisord':
        directory = p.get('program_dir') or found['supervisord_conf_dir'] or '/etc/supervisor/conf.d'
        path = os.path.join(directory, p['name'] + '.conf')
    else:
        path = p.get('start_script')
    return path, (service_env.read_text(path) if path else None) or ''


def tagged(acct, source):
    return dict(acct, source=source) if acct else None


def decide_user(psutil, p, found, status_pid, masters):
    """-> (run_as, found_user, runner file path): who the rendered runner runs as (see service_user.decide)."""
    path, text = runner_file(p, found)
    user, group = service_env.runner_file_user(found['manager'], text, p['name'])
    master = tagged(service_user.of_process(psutil, status_pid), 'master %s' % status_pid) if status_pid else None
    named = tagged(service_user.from_names(user, group), '%s of %s' % (
        {'systemd': 'User=', 'supervisord': 'user='}.get(found['manager'], 'setpriv'), path))
    others = [m for m in masters if m['pid'] != status_pid]
    oldest = max(others, key=lambda m: m['age']) if others else None
    stray = tagged(service_user.of_process(psutil, oldest['pid']), 'master %s, not run by the manager' % oldest['pid']) \
        if oldest else None
    try:
        run_as, found_user = service_user.decide(master, named, stray, p.get('user'), p.get('group'))
    except ValueError as e:
        raise NotFound('%s: %s' % (p['name'], e))
    if run_as and user == 'dynamic' and not p.get('user'):
        raise NotFound('%s runs with DynamicUser=yes, which is not carried over: set doctor_service_user' % path)
    if run_as and run_as['uid'] is None:
        raise NotFound('%s names the user %s, who does not exist on this host: fix it or set doctor_service_user'
                       % (path, run_as['user']))
    if run_as:
        same = found_user and (not p.get('user') or found_user['uid'] == run_as['uid'])
        run_as = dict(run_as, source=found_user['source'] if same else 'the user given (doctor_service_user)')
        check_access(run_as, p, found['manager'])
    return run_as, found_user, path


def check_access(run_as, p, manager):
    """A service user who cannot run the interpreter or read the app directory would only fail to start; under
    supervisord its start script reads the env file as that user too (and would skip one it cannot read)."""
    python = p.get('python')
    python = python if not python or os.path.isabs(python) else shutil.which(python)
    checks = [(python, os.X_OK, 'run'), (p['chdir'], os.R_OK | os.X_OK, 'read')]
    if manager == 'supervisord' and p.get('env_file') and os.path.exists(p['env_file']):
        checks.append((p['env_file'], os.R_OK, 'read'))
    for path, bits, what in checks:
        if path and not service_user.can_access(run_as, path, bits):
            raise NotFound('%s (the service user, from %s) cannot %s %s: make it readable by that user, or set '
                           'doctor_python / doctor_service_user' % (run_as['user'], run_as['source'], what, path))


def current_settings(psutil, master):
    """The effective settings of the master the service runs (its argv, GUNICORN_CMD_ARGS, its config file), for
    the settings stabilize's command touches -> dict(settings, sources, config_file, computed, problems,
    cmd_args, socket_activated: how many sockets a service manager passed it); None when no master runs."""
    if master is None:
        return None
    try:
        argv = psutil.Process(master['pid']).cmdline()
    except Exception:  # gone in between
        return None
    environ = service_env.read_proc_environ(master['pid']) or {}

    def read(path):
        found = safe_read.read_text(path, safe_read.SOURCE_MAX, follow=True)
        if found.data is None:
            raise OSError(found.error)
        return found.data

    current = shape_settings(gunicorn_settings.effective(argv, environ, master['cwd'] or '/', read), environ)
    current['socket_activated'] = gunicorn_settings.socket_activation(environ, master['pid'])
    return current


def shape_settings(found, environ):
    """current_settings from gunicorn_settings.effective(): the SHAPE_SETTINGS, raw_env (-e NAME=VALUE, the value
    may be a secret) by names only."""
    settings = dict((k, found['settings'].get(k)) for k in SHAPE_SETTINGS)
    settings['raw_env'] = [str(item).split('=', 1)[0] for item in settings.get('raw_env') or []]
    return {'settings': settings, 'sources': dict((k, found['sources'].get(k)) for k in SHAPE_SETTINGS),
            'computed': sorted(k for k in found['computed'] if k in SHAPE_SETTINGS),
            'config_file': found['config_file'], 'problems': found['problems'],
            'cmd_args': 'GUNICORN_CMD_ARGS' in environ}


def manager_problem(found, p):
    """Why the manager found cannot run the service (None when it can)."""
    manager = found['manager']
    if manager == 'supervisord' and not found['supervisorctl']:
        return 'supervisord is the service manager but no supervisorctl was found: set doctor_supervisorctl'
    if manager == 'standalone' and not p.get('pidfile'):
        return 'pidfile is required for the standalone runner'
    problems = service_control.supervisord_problems(found, p.get('program_dir')) if manager == 'supervisord' else []
    if problems:
        return ('supervisord is not trusted, so no program is written for it: %s - fix that, or set '
                'doctor_service_manager=standalone' % '; '.join(problems))
    return None


def master_worker_class(psutil, pid, masters):
    """The worker class of the master the manager runs (None when it is gone)."""
    managed = next((m for m in masters if m['pid'] == pid), None)
    if managed:
        return managed['settings']['worker_class']
    try:
        return gunicorn.parse_cmdline(psutil.Process(pid).cmdline())['worker_class']
    except Exception:  # gone in between
        return None


def app_processes(psutil, app, chdir):
    """process.collect's answer for the app, this Ansible run left out (service_info's, and the strays' of clean_up)."""
    return process.collect(psutil, app, chdir, processes.own_lineage(psutil))


def find(psutil, p, run_command, facts=None):
    """service_info's answer for the parameters `p` (its options; '' is unset). Raises NotFound.
    facts: app_processes' answer when the caller reads it anyway (service_apply state=found with clean)."""
    p = dict((key, value) for key, value in p.items() if value not in ('', None))
    masters = (facts or app_processes(psutil, p['app'], p['chdir']))['masters']
    oldest = max(masters, key=lambda m: m['age']) if masters else None
    runner = oldest['runner'] if oldest else None
    try:
        found = service_control.detect(psutil, p.get('manager') or 'auto', runner, p.get('supervisorctl'),
                                       p.get('supervisord_conf'), app=p['app'], chdir=p['chdir'])
    except service_control.ServiceError as e:
        raise NotFound(str(e))
    result = dict(found, current_runner=runner['kind'] if runner else None, running=False, pid=None,
                  state='UNKNOWN', worker_class=oldest['settings']['worker_class'] if oldest else None)
    env = service_env.parse_dotenv(service_env.read_text(p['env_file']) or '') if p.get('env_file') else {}
    result.update(env_file_port=env.get('PORT'), env_file_cmd_args='GUNICORN_CMD_ARGS' in env)
    problem = manager_problem(found, p)
    if problem:
        raise NotFound(problem, result)
    params = dict(p, manager=found['manager'], supervisorctl=found['supervisorctl'],
                  supervisord_conf=found['supervisord_conf'], grace=10, start_timeout=30)
    params.setdefault('pidfile', None)
    try:
        status = service_control.Service(psutil, params, run_command).status()
    except service_control.ServiceError as e:
        raise NotFound(str(e), result)
    result.update(running=status['running'], pid=status['pid'], state=status['state'], started=None)
    if status['pid']:
        try:
            result['started'] = psutil.Process(status['pid']).create_time()
        except Exception:  # gone in between
            pass
        result['worker_class'] = master_worker_class(psutil, status['pid'], masters) or result['worker_class']
    current = next((m for m in masters if m['pid'] == status['pid']), None) or oldest
    result['current_settings'] = current_settings(psutil, current)
    result['run_as'], result['found_user'], result['runner_file'] = decide_user(psutil, p, found, status['pid'],
                                                                                masters)
    return result
