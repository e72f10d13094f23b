#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: boot_info
short_description: Make a silent Gunicorn boot failure show itself
version_added: 0.1.0
description:
  - Imports the app in its own interpreter (the runbook's dry import), scans its package for
    C(app.run()) at import, reads the gunicorn log, and when C(/healthz) is not a stable 200 boots
    it with C(gunicorn --preload -k sync) on a free loopback port, then stops that boot's whole session.
  - The import and the boot run the app's own code, as the service's user (the running master's, else its
    unit's or program's, else the owner of O(chdir)) with the service's environment and a private HOME (see
    the notes). O(dry_import=false) and O(preload_boot=never) turn them off.
  - Causes C(boot_exception), C(slow_boot), C(dev_server_at_import), C(worker_timeout) and C(missing_env).
  - Read-only. M(sre.gunicorn_doctor.probe) runs this and the other layers in one call.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
extends_documentation_fragment:
  - sre.gunicorn_doctor.probe
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
'''

EXAMPLES = r'''
- name: Check the boot layer of the voice app
  sre.gunicorn_doctor.boot_info:
    app: AgentLocator.main:app
    chdir: /srv/agentlocator
    python: /srv/agentlocator/.venv/bin/python
  register: boot_layer
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
  description: What the probe observed (boot, log, port).
  returned: success
  type: dict
'''

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.layer_module import run_layer_module


def main():
    run_layer_module('boot', ('boot', 'log', 'port'))


if __name__ == '__main__':
    main()
