#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: unit_verify
short_description: Check a systemd unit's text with systemd-analyze verify before it is written
version_added: 0.2.0
description:
  - Writes I(content) as I(unit_name) (and its drop-ins) into a scratch directory and runs
    C(systemd-analyze verify) on it - it needs no running systemd, so it works in containers and in check mode.
  - Fails with systemd's reason (e.g. C(Command /srv/app/.venv/bin/python is not executable)) when the unit is bad.
  - Read-only; the scratch directory is removed.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
options:
  content:
    description: The unit's text.
    type: str
    required: true
  unit_name:
    description: File name of the unit, e.g. C(agentlocator.service).
    type: str
    required: true
  dropins:
    description: Drop-in files of the unit, file name to text (they go in C(UNIT.d/)).
    type: dict
    default: {}
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
'''

EXAMPLES = r'''
- name: Verify the unit before writing it
  sre.gunicorn_doctor.unit_verify:
    content: "{{ lookup('ansible.builtin.template', 'gunicorn.service.j2') }}"
    unit_name: agentlocator.service
'''

RETURN = r'''
verified:
  description: True when systemd-analyze accepted the unit, null when systemd-analyze is not installed.
  returned: always
  type: bool
output:
  description: What systemd-analyze printed.
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize.service_control import verify_unit


def main():
    module = AnsibleModule(
        argument_spec=dict(
            content=dict(type='str', required=True),
            unit_name=dict(type='str', required=True),
            dropins=dict(type='dict', default={}),
        ),
        supports_check_mode=True,
    )
    p = module.params
    ok, output = verify_unit(p['content'], p['unit_name'], module.run_command, p['dropins'])
    if ok is None:
        module.warn('%s: the unit was not verified' % output)
    elif not ok:
        module.fail_json(msg='systemd-analyze verify rejects %s: %s' % (p['unit_name'], output), verified=False, output=output)
    module.exit_json(changed=False, verified=ok, output=output)


if __name__ == '__main__':
    main()
