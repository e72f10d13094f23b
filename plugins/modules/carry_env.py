#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: carry_env
short_description: Keep the environment a service's runner file gives it when the file is rewritten
version_added: 0.2.0
description:
  - Reads the variables the service's current runner file sets (systemd C(Environment=), a supervisord program's
    C(environment=), the standalone runner's env file) and writes them, with those already carried, into one env
    file on the host (mode 0600) that the rewritten runner reads - so a takeover keeps variables such as
    credentials without their values ever reaching the controller, the output or a diff.
  - With I(group), the file is readable by that group (mode 0640, owner root) - a supervisord program that runs as
    the service's user sources it in its start script; else it is owner-only (mode 0600).
  - Variables the new runner file sets itself (I(exclude), and always C(PORT), C(EVENTLET_HUB), C(EVENTLET_NO_GREENDNS))
    are not carried. A value only the service manager could expand (a supervisord environment expansion, a systemd specifier)
    or an C(Environment=) line that cannot be read ends the run with the variable's name - nothing is half carried.
  - Returns the C(EnvironmentFile=) paths of a systemd unit, so the rewritten unit keeps reading them.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
options:
  path:
    description: The env file to write (it is read as well - what it holds stays).
    type: path
    required: true
  manager:
    description: What kind of file I(runner_file) is.
    type: str
    required: true
    choices: [systemd, supervisord, standalone]
  runner_file:
    description: The service's runner file as it is now (a missing file carries nothing).
    type: path
    required: true
  name:
    description: The supervisord program whose C(environment=) is read.
    type: str
    required: true
  exclude:
    description: Variables the rewritten runner file sets itself (C(PORT), C(EVENTLET_*)).
    type: list
    elements: str
    default: []
  exclude_files:
    description: Env files the rewritten runner reads anyway (the service's env file); not returned in I(env_files).
    type: list
    elements: path
    default: []
  group:
    description: The service's group (name or gid), when its start script reads I(path) as the service's user.
    type: str
    version_added: 0.3.0
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes.names_only_diff
'''

EXAMPLES = r'''
- name: Keep what the supervisord program gives the voice app
  sre.gunicorn_doctor.carry_env:
    path: /var/lib/gunicorn-doctor/agentlocator/carried.env
    manager: supervisord
    runner_file: /etc/supervisor/conf.d/agentlocator.conf
    name: agentlocator
    exclude: [PORT, EVENTLET_HUB, EVENTLET_NO_GREENDNS]
'''

RETURN = r'''
names:
  description: Names of the variables the env file carries (values stay on the host).
  returned: always
  type: list
  elements: str
  sample: [GOOGLE_APPLICATION_CREDENTIALS, TWILIO_AUTH_TOKEN]
from_runner_file:
  description:
    - Names of the variables I(runner_file) sets now, besides I(exclude). When there are any, the file's old
      content may hold credentials - do not show its diff.
  returned: always
  type: list
  elements: str
foreign:
  description: Whether I(runner_file) exists and was not rendered by this collection (its old content is not to be shown).
  returned: always
  type: bool
env_files:
  description: The C(EnvironmentFile=) paths of the systemd unit I(runner_file), without I(path) and I(exclude_files).
  returned: always
  type: list
  elements: str
'''


from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import carried_env


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            manager=dict(type='str', required=True, choices=['systemd', 'supervisord', 'standalone']),
            runner_file=dict(type='path', required=True),
            name=dict(type='str', required=True),
            exclude=dict(type='list', elements='str', default=[]),
            exclude_files=dict(type='list', elements='path', default=[]),
            group=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = carried_env.carry(p, module.check_mode, module._diff)
    except carried_env.CarryError as e:
        module.fail_json(msg=str(e))
    except (IOError, OSError) as e:
        module.fail_json(msg='cannot write %s: %s' % (p['path'], to_native(e)))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
