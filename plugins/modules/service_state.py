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
  manager:
    description: The service manager (see M(sre.gunicorn_doctor.service_info) to resolve C(auto)).
    type: str
    required: true
    choices: [systemd, supervisord, standalone]
  state:
    description: What to do.
    type: str
    choices: [started, restarted, stopped]
    default: started
  start_script:
    description: Start script of the standalone runner (required for it).
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
    description:
      - Logs to archive while the service is stopped during a restart - the options of
        M(sre.gunicorn_doctor.archive_logs) of the same names, which this archiving is.
notes:
  - The standalone runner needs I(pidfile) and I(start_script), supervisord I(supervisorctl).
extends_documentation_fragment:
  - sre.gunicorn_doctor.service
  - sre.gunicorn_doctor.log_archive.archive
  - sre.gunicorn_doctor.service.runner
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
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


from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import module_args, service_pass
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact

ARGUMENT_SPEC = dict(module_args.APP, **module_args.RUNNER)
ARGUMENT_SPEC.update(
    manager=dict(type='str', required=True, choices=module_args.MANAGERS),
    state=dict(type='str', default='started', choices=['started', 'restarted', 'stopped']),
    start_script=dict(type='path'),
    console_log=dict(type='path'),
    log_files=dict(type='list', elements='path', default=[]),
    grace=dict(type='float', default=10),
    start_timeout=dict(type='float', default=30),
    archive=dict(type='dict', options=module_args.ARCHIVE),
)


def main():
    module, psutil = module_args.new_module(ARGUMENT_SPEC, required_if=[
        ('manager', 'standalone', ('pidfile', 'start_script')), ('manager', 'supervisord', ('supervisorctl',))])
    p = module.params
    try:
        result = service_pass.change_state(psutil, p, module.run_command, p['state'], module.check_mode, p['archive'])
    except service_pass.PassError as e:
        # The message quotes the manager's output and the service's log: redacted before it leaves the host.
        module_args.fail_pass(module, e)
    module.exit_json(**redact(result))


if __name__ == '__main__':
    main()
