#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: app_pip
short_description: Install or remove packages with the pip of an app's venv, as the venv's owner
version_added: 0.3.0
description:
  - Runs the pip beside the app's interpreter (C(pip install) or C(pip uninstall -y)) - as the user who owns the
    venv, its C(bin/) or its C(site-packages) when that is not root, with that user's groups, C(HOME) and a small
    environment (never root's SSH agent, C(SUDO_*) or C(ANSIBLE_*)). Root running pip from a venv the app's user
    can write would run that user's code as root.
  - A root-owned venv another user can write still runs as root, with a warning saying so.
  - Idempotent - C(changed) only when pip installed or uninstalled something. Check mode asks
    C(pip install --dry-run) (pip 22.2+) or C(pip show) and changes nothing.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
options:
  python:
    description: The app's interpreter (a venv's python); the pip beside it is used.
    type: str
    required: true
  name:
    description: Requirement specifiers (C(eventlet>=0.40.3)) to install, or distribution names to remove.
    type: list
    elements: str
    required: true
  state:
    description: Install (C(present)) or uninstall (C(absent)).
    type: str
    choices: [present, absent]
    default: present
  extra_args:
    description: More arguments for C(pip install).
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds pip may take.
    type: int
    default: 600
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
'''

EXAMPLES = r'''
- name: Install the eventlet pins in the app's venv, as its owner
  sre.gunicorn_doctor.app_pip:
    python: /srv/agentlocator/.venv/bin/python
    name: ["gunicorn>=25,<26", "eventlet>=0.40.3"]
    extra_args: [--only-binary=greenlet]
'''

RETURN = r'''
run_as:
  description: The user pip ran as - the venv's owner, or C(root).
  returned: always
  type: str
  sample: www-data
cmd:
  description: The pip command line.
  returned: always
  type: list
  elements: str
stdout:
  description: The end of pip's output.
  returned: always
  type: str
'''

import re
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import eventlet_pins
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import service_user


def run_pip(module, argv, owner):
    """-> (rc, output) of pip run as `owner` (None: as we are)."""
    try:
        done = subprocess.run(argv, cwd='/', stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=module.params['timeout'], check=False,
                              **service_user.run_kwargs(owner))
    except subprocess.TimeoutExpired:
        module.fail_json(msg='%s did not finish within %d s' % (' '.join(argv[:3]), module.params['timeout']), cmd=argv)
    except (IOError, OSError) as e:
        module.fail_json(msg='cannot run %s: %s' % (argv[0], to_native(e)), cmd=argv)
    return done.returncode, done.stdout.decode('utf-8', 'replace')


def command(module, pip):
    """-> (argv, what in pip's output says something changed)."""
    p = module.params
    if p['state'] == 'absent':
        if module.check_mode:
            return [pip, 'show'] + p['name'], r'^Name: '
        return [pip, 'uninstall', '-y', '--disable-pip-version-check'] + p['name'], r'^Successfully uninstalled '
    argv = [pip, 'install', '--disable-pip-version-check'] + p['extra_args']
    if module.check_mode:
        return argv + ['--dry-run'] + p['name'], r'^Would install '
    return argv + p['name'], r'^Successfully installed '


def main():
    module = AnsibleModule(
        argument_spec=dict(
            python=dict(type='str', required=True),
            name=dict(type='list', elements='str', required=True),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            extra_args=dict(type='list', elements='str', default=[]),
            timeout=dict(type='int', default=600),
        ),
        supports_check_mode=True,
    )
    pip = eventlet_pins.pip_beside(module.params['python'])
    if not pip:
        module.fail_json(msg='%s has no pip beside it: give the app\'s virtualenv python' % module.params['python'])
    owner, warning = service_user.venv_owner(module.params['python'])
    if warning:
        module.warn(warning)
    argv, changed_marker = command(module, pip)
    rc, out = run_pip(module, argv, owner)
    result = dict(run_as=owner['user'] if owner else 'root', cmd=argv, stdout=out[-4000:],
                  changed=bool(re.search(changed_marker, out, re.M)))
    if rc != 0 and module.check_mode and module.params['state'] == 'present' and 'no such option' in out:
        module.warn('this pip has no --dry-run: check mode cannot tell whether it would install anything')
        result['changed'] = True
    elif rc != 0 and not (module.check_mode and module.params['state'] == 'absent'):
        module.fail_json(msg='pip failed (rc %d, as %s): %s' % (rc, result['run_as'], out.strip()[-1500:]), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
