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
env_file_port:
  description: The raw C(PORT) value of I(env_file), or null when it has none.
  returned: always
  type: str
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
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils import gunicorn, processes, service_control, service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import process
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.psutil_dep import require_psutil


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
        ),
        supports_check_mode=True,
    )
    psutil = require_psutil(module)
    p = module.params
    masters = process.collect(psutil, p['app'], p['chdir'], processes.own_lineage(psutil))['masters']
    oldest = max(masters, key=lambda m: m['age']) if masters else None
    runner = oldest['runner'] if oldest else None
    found = service_control.detect(psutil, p['manager'], runner, p['supervisorctl'], p['supervisord_conf'])
    result = dict(found, changed=False, current_runner=runner['kind'] if runner else None, running=False, pid=None,
                  state='UNKNOWN', worker_class=oldest['settings']['worker_class'] if oldest else None)
    env = service_env.parse_dotenv(service_env.read_text(p['env_file']) or '') if p['env_file'] else {}
    result['env_file_port'] = env.get('PORT')
    manager = found['manager']
    if manager == 'supervisord' and not found['supervisorctl']:
        module.fail_json(msg='supervisord is the service manager but no supervisorctl was found: set doctor_supervisorctl',
                         **result)
    if manager == 'standalone' and not p['pidfile']:
        module.fail_json(msg='pidfile is required for the standalone runner', **result)
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
    module.exit_json(**result)


if __name__ == '__main__':
    main()
