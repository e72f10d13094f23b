#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: eventlet_pins_info
short_description: The package pins that let an app's environment run the eventlet worker
version_added: 0.2.0
description:
  - Reads the app interpreter's Python version and its installed gunicorn, eventlet, greenlet, gevent and
    uvloop, and picks the pins of the collection's compatibility table for that Python (today
    C(gunicorn>=25,<26) - gunicorn 26 removed the eventlet worker - C(eventlet>=0.40.3) and a greenlet that
    has a wheel for the Python).
  - Says whether gevent/uvloop (the runbook's async conflict) may be removed - only when neither the app's own
    source imports them nor an installed distribution requires them.
  - The interpreter runs as the owner of its venv when that is not root (root running code from a venv another user
    can write would give that user root), isolated (C(-I)) and outside the app's directory.
  - Read-only; M(sre.gunicorn_doctor.app_pip) installs, as the same user.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
options:
  python:
    description: The app's interpreter.
    type: str
    required: true
  chdir:
    description: The app's directory.
    type: path
    required: true
  app:
    description: WSGI target, C(MODULE:VARIABLE) (its package is scanned for imports).
    type: str
    required: true
  requirements:
    description: Pins to use instead of the table's (e.g. to force a version).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
'''

EXAMPLES = r'''
- name: Pick the eventlet pins for the app's Python
  sre.gunicorn_doctor.eventlet_pins_info:
    python: /srv/agentlocator/.venv/bin/python
    chdir: /srv/agentlocator
    app: AgentLocator.main:app
  register: pins
'''

RETURN = r'''
python_version:
  description: The app interpreter's Python version.
  returned: success
  type: str
  sample: 3.11.7
versions:
  description: Installed versions of gunicorn, eventlet, greenlet, gevent, uvloop.
  returned: success
  type: dict
requirements:
  description: The pins to install (I(requirements), else the table's).
  returned: success
  type: list
  elements: str
  sample: ["gunicorn>=25,<26", "eventlet>=0.40.3", "greenlet>=3.0.3"]
recommended:
  description: The table's pins for this Python.
  returned: success
  type: list
  elements: str
problems:
  description: What the installed versions would break, from the compatibility table.
  returned: success
  type: list
  elements: dict
pip:
  description: The pip beside the interpreter, or null.
  returned: success
  type: str
remove:
  description: Conflicting packages nothing needs, safe to uninstall.
  returned: success
  type: list
  elements: str
keep:
  description: Conflicting packages the app or a distribution needs, with who needs them.
  returned: success
  type: list
  elements: dict
run_as:
  description: The user the interpreter ran as (and pip will) - the venv's owner, or C(root).
  returned: success
  type: str
  sample: www-data
  version_added: 0.3.0
'''

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import eventlet_pins
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import service_user


def main():
    module = AnsibleModule(
        argument_spec=dict(
            python=dict(type='str', required=True),
            chdir=dict(type='path', required=True),
            app=dict(type='str', required=True),
            requirements=dict(type='list', elements='str', default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    owner, warning = service_user.venv_owner(p['python'])
    if warning:
        module.warn(warning)
    try:
        found = eventlet_pins.plan(p['python'], p['chdir'], p['app'], p['requirements'], run_as=owner)
    except (IOError, OSError, ValueError) as e:
        module.fail_json(msg='cannot read the packages of %s: %s' % (p['python'], to_native(e)))
    module.exit_json(changed=False, run_as=owner['user'] if owner else 'root', **found)


if __name__ == '__main__':
    main()
