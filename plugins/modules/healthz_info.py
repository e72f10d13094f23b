#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: healthz_info
short_description: Sample the health endpoint of a Gunicorn service over a stability window
version_added: 0.1.0
description:
  - GETs C(http://127.0.0.1:PORT/healthz); when a gunicorn process of the app is younger than
    I(stability_window), keeps sampling until it is that old, so a worker that dies after ~10 s is
    caught.
  - Causes C(healthz_missing), C(healthz_error) and C(healthz_flapping).
  - Read-only. M(sre.gunicorn_doctor.probe) runs this and the other layers in one call.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
extends_documentation_fragment:
  - sre.gunicorn_doctor.probe
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
'''

EXAMPLES = r'''
- name: Check the healthz layer of the voice app
  sre.gunicorn_doctor.healthz_info:
    app: AgentLocator.main:app
    chdir: /srv/agentlocator
    python: /srv/agentlocator/.venv/bin/python
  register: healthz_layer
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
  description: What the probe observed (healthz, port).
  returned: success
  type: dict
'''

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.layer_module import run_layer_module


def main():
    run_layer_module('healthz', ('healthz', 'port'))


if __name__ == '__main__':
    main()
