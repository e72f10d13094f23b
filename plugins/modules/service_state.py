#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: service_state
short_description: Start, restart or stop a Gunicorn app's service in its service manager
version_added: 0.2.0
description:
  - Drives the service through the manager the host has - systemd (C(systemctl), only where systemd is the init
    system), supervisord (C(supervisorctl reread), C(update), C(start), C(stop)), or the standalone pidfile
    runner (its start script, C(gunicorn --daemon --pid FILE); stopped by the pid in the pidfile, proven to be a
    master of the app, C(TERM) then C(KILL) after I(grace) seconds).
  - I(state=restarted) stops the service, archives its logs while nothing writes to them (I(archive)), and
    starts it again - so the new run starts with a clean log.
  - Returns once the manager reports a live master of the app; whether it serves is
    M(sre.gunicorn_doctor.verify)'s question.
  - I(state=started) changes nothing when the service runs.
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
    description: The service manager (see M(sre.gunicorn_doctor.service_info) to resolve C(auto)).
    type: str
    required: true
    choices: [systemd, supervisord, standalone]
  name:
    description: Name of the service (systemd unit C(NAME.service), supervisord program C(NAME)).
    type: str
    required: true
  state:
    description: What to do.
    type: str
    choices: [started, restarted, stopped]
    default: started
  pidfile:
    description: Pidfile of the standalone runner (required for it).
    type: path
  start_script:
    description: Start script of the standalone runner (required for it).
    type: path
  supervisorctl:
    description: supervisorctl to use (required for supervisord).
    type: path
  supervisord_conf:
    description: supervisord's config file, passed as C(supervisorctl -c).
    type: path
  console_log:
    description: The runner's console log (output before gunicorn opens its log); its errors end a failed start early.
    type: path
  log_files:
    description: The service's logs (gunicorn's error log); an error there ends a failed start early, and names the cause.
    type: list
    elements: path
    default: []
  grace:
    description: Seconds a master may take to exit after C(TERM) before C(KILL).
    type: float
    default: 10
  start_timeout:
    description: Seconds the manager may take to report a master after the start.
    type: float
    default: 30
  archive:
    description: Logs to archive while the service is stopped during a restart (see M(sre.gunicorn_doctor.archive_logs)).
    type: dict
    suboptions:
      paths:
        description: Log files.
        type: list
        elements: path
        default: []
      patterns:
        description: Globs of more logs.
        type: list
        elements: str
        default: []
      archive_dir:
        description: Directory of the archives.
        type: path
        required: true
      stamp:
        description: Name of this run's archive directory, UTC C(YYYYMMDDTHHMMSSZ).
        type: str
        required: true
      keep:
        description: How many archive directories to keep.
        type: int
        default: 5
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
requirements:
  - psutil
'''

EXAMPLES = r'''
- name: Restart the voice app under supervisord
  sre.gunicorn_doctor.service_state:
    app: AgentLocator.main:app
    chdir: /srv/agentlocator
    manager: supervisord
    name: agentlocator
    supervisorctl: /usr/bin/supervisorctl
    state: restarted
'''

RETURN = r'''
pid:
  description: The master's pid after the action (null when stopped, or in check mode when it would change).
  returned: always
  type: int
previous_pid:
  description: The master's pid before the action, or null.
  returned: always
  type: int
actions:
  description: What was done, in order.
  returned: always
  type: list
  elements: str
archived:
  description: Logs archived during the restart.
  returned: always
  type: list
  elements: dict
'''


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import service_pass
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.psutil_dep import require_psutil
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact


def main():
    module = AnsibleModule(
        argument_spec=dict(
            app=dict(type='str', required=True),
            chdir=dict(type='path', required=True),
            manager=dict(type='str', required=True, choices=['systemd', 'supervisord', 'standalone']),
            name=dict(type='str', required=True),
            state=dict(type='str', default='started', choices=['started', 'restarted', 'stopped']),
            pidfile=dict(type='path'),
            start_script=dict(type='path'),
            supervisorctl=dict(type='path'),
            supervisord_conf=dict(type='path'),
            console_log=dict(type='path'),
            log_files=dict(type='list', elements='path', default=[]),
            grace=dict(type='float', default=10),
            start_timeout=dict(type='float', default=30),
            archive=dict(type='dict', options=dict(
                paths=dict(type='list', elements='path', default=[]),
                patterns=dict(type='list', elements='str', default=[]),
                archive_dir=dict(type='path', required=True),
                stamp=dict(type='str', required=True),
                keep=dict(type='int', default=5),
            )),
        ),
        required_if=[('manager', 'standalone', ('pidfile', 'start_script')), ('manager', 'supervisord', ('supervisorctl',))],
        supports_check_mode=True,
    )
    psutil = require_psutil(module)
    p = module.params
    try:
        result = service_pass.change_state(psutil, p, module.run_command, p['state'], module.check_mode, p['archive'])
    except service_pass.PassError as e:
        # The message quotes the manager's output and the service's log: redacted before it leaves the host.
        module.fail_json(**redact(dict(e.result, msg=str(e))))
    module.exit_json(**redact(result))


if __name__ == '__main__':
    main()
