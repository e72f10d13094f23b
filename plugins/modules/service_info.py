#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: service_info
short_description: Which service manager runs a Gunicorn app, and its master
version_added: 0.2.0
description:
  - Resolves I(manager=auto) to what the host has - the runner that runs the app now when it is systemd,
    supervisord or a C(gunicorn --daemon) pidfile; else systemd when it is the init system; else a running
    supervisord whose config includes a directory; else a standalone pidfile runner.
  - Reports the service's master as its manager sees it (pidfile, C(supervisorctl status), C(systemctl show)),
    proven to be a gunicorn master of the app.
  - Decides who the service runs as (I(run_as)) - the user and group of the master its manager runs, or of the user
    its runner file names (a unit's C(User=)/C(Group=), a program's C(user=), the start script's C(setpriv)); of
    the two a non-root one wins; else another running master of the app; else root, as before. I(user) and
    I(group) override it, but a service found running as another user is never made root - that fails, as does a
    user who cannot run I(python) in I(chdir).
  - Fails, with the reason, when the manager is a supervisord that does not run as root or whose binary, config,
    program directory or supervisorctl another user can change - root does not write programs for it.
  - Read-only.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
options:
  app:
    description: WSGI target of the service, C(MODULE:VARIABLE).
    type: str
    required: true
  chdir:
    description: Directory gunicorn runs the app from.
    type: path
    required: true
  manager:
    description: C(auto), or the manager to use.
    type: str
    choices: [auto, systemd, supervisord, standalone]
    default: auto
  name:
    description: Name of the service (systemd unit C(NAME.service), supervisord program C(NAME)).
    type: str
    required: true
  pidfile:
    description: Pidfile of the standalone runner.
    type: path
  supervisorctl:
    description: supervisorctl to use; default - the one beside the running supervisord, else from C(PATH).
    type: path
  supervisord_conf:
    description: supervisord's config file; default - the running supervisord's C(-c) file.
    type: path
  env_file:
    description: Dotenv-style file of the service environment; its C(PORT) is returned.
    type: path
  user:
    description: The user the service is to run as (name or uid), instead of the one found; C(root) is refused for a
      service found running as another user.
    type: str
    version_added: 0.3.0
  group:
    description: The service's group (name or gid); default the group found, or the primary group of I(user).
    type: str
    version_added: 0.3.0
  unit_dir:
    description: Where the service's systemd unit is (its C(User=)/C(Group=) are read from C(NAME.service) and its drop-ins).
    type: path
    default: /etc/systemd/system
    version_added: 0.3.0
  program_dir:
    description: Where the service's supervisord program is; default the running supervisord's C([include]) directory.
    type: path
    version_added: 0.3.0
  start_script:
    description: The standalone runner's start script (its C(setpriv --reuid/--regid) is read).
    type: path
    version_added: 0.3.0
  python:
    description: The app's interpreter; a non-root service user must be able to run it.
    type: str
    version_added: 0.3.0
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
requirements:
  - psutil
'''

EXAMPLES = r'''
- name: Find the service manager of the voice app
  sre.gunicorn_doctor.service_info:
    app: AgentLocator.main:app
    chdir: /srv/agentlocator
    name: agentlocator
    pidfile: /var/lib/gunicorn-doctor/agentlocator/gunicorn.pid
  register: service
'''

RETURN = r'''
manager:
  description: The manager to use.
  returned: always
  type: str
  sample: supervisord
why:
  description: Why that manager.
  returned: always
  type: str
running:
  description: Whether the manager runs a live master of the app under I(name).
  returned: always
  type: bool
pid:
  description: That master's pid, or null.
  returned: always
  type: int
started:
  description: Start time (epoch seconds) of that master, or null.
  returned: always
  type: float
state:
  description: The manager's word for the service's state (C(RUNNING), C(STOPPED), C(ACTIVE), ...).
  returned: always
  type: str
worker_class:
  description: Worker class of that master (C(sync), C(eventlet), ...), or of the app's oldest master when the manager runs none.
  returned: always
  type: str
current_runner:
  description: Kind of runner of the app's oldest master (C(supervisord), C(systemd), C(standalone), C(detached), ...), or null.
  returned: always
  type: str
current_settings:
  description:
    - The effective settings of the master the service runs, for those stabilize's command keeps or overrides
      (C(settings), each with its C(sources) - C(command line), C(GUNICORN_CMD_ARGS), C(config file PATH:LINE),
      C(default)), the C(config_file) gunicorn loads, the settings it C(computed) and cannot know, C(problems),
      and whether C(GUNICORN_CMD_ARGS) is set (C(cmd_args)). Null when no master runs.
  returned: always
  type: dict
env_file_port:
  description: The raw C(PORT) value of I(env_file), or null when it has none.
  returned: always
  type: str
env_file_cmd_args:
  description: Whether I(env_file) sets C(GUNICORN_CMD_ARGS) (the runner then keeps it).
  returned: always
  type: bool
supervisorctl:
  description: supervisorctl found for the running supervisord.
  returned: always
  type: str
supervisord_conf:
  description: supervisord's config file.
  returned: always
  type: str
supervisord_conf_dir:
  description: The directory its C([include]) section reads program files from.
  returned: always
  type: str
systemd_booted:
  description: Whether systemd is the init system.
  returned: always
  type: bool
runner_file:
  description: The service's runner file for the manager (unit, program file or start script).
  returned: success
  type: str
  version_added: 0.3.0
run_as:
  description:
    - Who the runner is to run the service as - C(user), C(group), C(uid), C(gid), C(home), C(source) - or null for
      root (no user directive is rendered, as before).
  returned: success
  type: dict
  sample: {user: www-data, group: www-data, uid: 33, gid: 33, home: /var/www, source: master 4242}
  version_added: 0.3.0
found_user:
  description: The user the service was found running as (same keys as I(run_as)), or null when nothing says.
  returned: success
  type: dict
  version_added: 0.3.0
'''

import glob
import os
import shutil

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn, gunicorn_settings, service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import processes, safe_read, service_user
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import service_control
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import process
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.psutil_dep import require_psutil


def runner_file(p, found):
    """The service's runner file for the manager found, and its text (a unit with its drop-ins)."""
    manager = found['manager']
    if manager == 'systemd':
        path = os.path.join(p['unit_dir'], p['name'] + '.service')
        texts = [service_env.read_text(f) or '' for f in [path] + sorted(glob.glob(path + '.d/*.conf'))]
        return path, '\n'.join(texts)
    if manager == 'supervisord':
        directory = p['program_dir'] or found['supervisord_conf_dir'] or '/etc/supervisor/conf.d'
        path = os.path.join(directory, p['name'] + '.conf')
    else:
        path = p['start_script']
    return path, (service_env.read_text(path) if path else None) or ''


def tagged(acct, source):
    return dict(acct, source=source) if acct else None


def decide_user(module, psutil, p, found, status_pid, masters):
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
        run_as, found_user = service_user.decide(master, named, stray, p['user'], p['group'])
    except ValueError as e:
        module.fail_json(msg='%s: %s' % (p['name'], e))
    if run_as and user == 'dynamic' and not p['user']:
        module.fail_json(msg='%s runs with DynamicUser=yes, which is not carried over: set doctor_service_user' % path)
    if run_as and run_as['uid'] is None:
        module.fail_json(msg='%s names the user %s, who does not exist on this host: fix it or set doctor_service_user'
                         % (path, run_as['user']))
    if run_as:
        same = found_user and (not p['user'] or found_user['uid'] == run_as['uid'])
        run_as = dict(run_as, source=found_user['source'] if same else 'the user given (doctor_service_user)')
        check_access(module, run_as, p, found['manager'])
    return run_as, found_user, path


def check_access(module, run_as, p, manager):
    """A service user who cannot run the interpreter or read the app directory would only fail to start; under
    supervisord its start script reads the env file as that user too (and would skip one it cannot read)."""
    python = p['python'] if not p['python'] or os.path.isabs(p['python']) else shutil.which(p['python'])
    checks = [(python, os.X_OK, 'run'), (p['chdir'], os.R_OK | os.X_OK, 'read')]
    if manager == 'supervisord' and p['env_file'] and os.path.exists(p['env_file']):
        checks.append((p['env_file'], os.R_OK, 'read'))
    for path, bits, what in checks:
        if path and not service_user.can_access(run_as, path, bits):
            module.fail_json(msg='%s (the service user, from %s) cannot %s %s: make it readable by that user, or set '
                             'doctor_python / doctor_service_user' % (run_as['user'], run_as['source'], what, path))


# What stabilize's canonical command must keep or override (plan.runner_shape); raw_env is left out (secrets).
SHAPE_SETTINGS = ('bind', 'worker_class', 'workers', 'timeout', 'keepalive', 'daemon', 'loglevel', 'capture_output',
                  'error_logfile', 'access_logfile')


def current_settings(psutil, master):
    """The effective settings of the master the service runs (its argv, GUNICORN_CMD_ARGS, its config file), for
    the settings stabilize's command touches -> dict(settings, sources, config_file, computed, problems,
    cmd_args); None when no master runs."""
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

    found = gunicorn_settings.effective(argv, environ, master['cwd'] or '/', read)
    return {'settings': dict((k, found['settings'].get(k)) for k in SHAPE_SETTINGS),
            'sources': dict((k, found['sources'].get(k)) for k in SHAPE_SETTINGS),
            'computed': sorted(k for k in found['computed'] if k in SHAPE_SETTINGS + ('raw_env',)),
            'config_file': found['config_file'], 'problems': found['problems'],
            'cmd_args': 'GUNICORN_CMD_ARGS' in environ}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            app=dict(type='str', required=True),
            chdir=dict(type='path', required=True),
            manager=dict(type='str', default='auto', choices=['auto', 'systemd', 'supervisord', 'standalone']),
            name=dict(type='str', required=True),
            pidfile=dict(type='path'),
            supervisorctl=dict(type='path'),
            supervisord_conf=dict(type='path'),
            env_file=dict(type='path'),
            user=dict(type='str'),
            group=dict(type='str'),
            unit_dir=dict(type='path', default='/etc/systemd/system'),
            program_dir=dict(type='path'),
            start_script=dict(type='path'),
            python=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    psutil = require_psutil(module)
    p = module.params
    masters = process.collect(psutil, p['app'], p['chdir'], processes.own_lineage(psutil))['masters']
    oldest = max(masters, key=lambda m: m['age']) if masters else None
    runner = oldest['runner'] if oldest else None
    try:
        found = service_control.detect(psutil, p['manager'], runner, p['supervisorctl'], p['supervisord_conf'],
                                       app=p['app'], chdir=p['chdir'])
    except service_control.ServiceError as e:
        module.fail_json(msg=str(e), changed=False)
    result = dict(found, changed=False, current_runner=runner['kind'] if runner else None, running=False, pid=None,
                  state='UNKNOWN', worker_class=oldest['settings']['worker_class'] if oldest else None)
    env = service_env.parse_dotenv(service_env.read_text(p['env_file']) or '') if p['env_file'] else {}
    result['env_file_port'] = env.get('PORT')
    result['env_file_cmd_args'] = 'GUNICORN_CMD_ARGS' in env
    manager = found['manager']
    if manager == 'supervisord' and not found['supervisorctl']:
        module.fail_json(msg='supervisord is the service manager but no supervisorctl was found: set doctor_supervisorctl',
                         **result)
    if manager == 'standalone' and not p['pidfile']:
        module.fail_json(msg='pidfile is required for the standalone runner', **result)
    problems = service_control.supervisord_problems(found, p['program_dir']) if manager == 'supervisord' else []
    if problems:
        module.fail_json(msg='supervisord is not trusted, so no program is written for it: %s - fix that, or set '
                         'doctor_service_manager=standalone' % '; '.join(problems), **result)
    params = dict(p, manager=manager, supervisorctl=found['supervisorctl'], supervisord_conf=found['supervisord_conf'],
                  grace=10, start_timeout=30)
    try:
        status = service_control.Service(psutil, params, module.run_command).status()
    except service_control.ServiceError as e:
        module.fail_json(msg=str(e), **result)
    result.update(running=status['running'], pid=status['pid'], state=status['state'], started=None)
    if status['pid']:
        try:
            result['started'] = psutil.Process(status['pid']).create_time()
        except Exception:  # gone in between
            pass
        managed = next((m for m in masters if m['pid'] == status['pid']), None)
        if managed:
            result['worker_class'] = managed['settings']['worker_class']
        else:
            try:
                result['worker_class'] = gunicorn.parse_cmdline(psutil.Process(status['pid']).cmdline())['worker_class']
            except Exception:  # gone in between
                pass
    current = next((m for m in masters if m['pid'] == status['pid']), None) or oldest
    result['current_settings'] = current_settings(psutil, current)
    result['run_as'], result['found_user'], result['runner_file'] = decide_user(module, psutil, p, found, status['pid'],
                                                                                masters)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
