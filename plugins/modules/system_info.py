#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: system_info
short_description: Check whether the host is killing a Gunicorn app from outside
version_added: 0.1.0
description:
  - Disk and inode use of the mounts holding the app, its log and the temp dir; the open-files limit
    of the running master and of a fresh process; available memory and the largest processes;
    OOM-killer events.
  - Causes C(disk_full), C(fd_limit_low), C(memory_pressure) and C(oom_killed).
  - Read-only. M(sre.gunicorn_doctor.probe) runs this and the other layers in one call.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
extends_documentation_fragment:
  - sre.gunicorn_doctor.probe
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
'''

EXAMPLES = r'''
- name: Check the system layer of the voice app
  sre.gunicorn_doctor.system_info:
    app: AgentLocator.main:app
    chdir: /srv/agentlocator
    python: /srv/agentlocator/.venv/bin/python
  register: system_layer
'''

RETURN = r'''
status:
  description: The layer's status.
  returned: success
  type: str
  sample: pass
checks:
  description: Each check of the layer with its status and a detail a human can verify.
  returned: success
  type: list
  elements: dict
  sample: [{name: listening on $PORT, status: pass, detail: "0.0.0.0:8123 by master 4242"}]
causes:
  description: Causes found in this layer (ids, evidence, remedy), as in the report.
  returned: success
  type: list
  elements: dict
facts:
  description: What the probe observed (system).
  returned: success
  type: dict
'''

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.layer_module import run_layer_module


def main():
    run_layer_module('system', ('system',))


if __name__ == '__main__':
    main()
