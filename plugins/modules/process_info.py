#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: process_info
short_description: List a Gunicorn app's masters, workers, runners and stray processes
version_added: 0.1.0
description:
  - Finds the gunicorn masters and workers of the app (app spec, cwd), parses their command lines,
    their ages and the runner that started them (systemd, supervisord, a shell loop, nohup, cron, a
    platform runner), and earlier runs of the app (dev servers, C(python main.py)).
  - "Causes C(multiple_runners), C(stray_processes) and C(periodic_sigterm) (from the log's
    C(Handling signal: term) history)."
  - Read-only. M(sre.gunicorn_doctor.probe) runs this and the other layers in one call.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
extends_documentation_fragment:
  - sre.gunicorn_doctor.probe
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
'''

EXAMPLES = r'''
- name: Check the process layer of the voice app
  sre.gunicorn_doctor.process_info:
    app: AgentLocator.main:app
    chdir: /srv/agentlocator
    python: /srv/agentlocator/.venv/bin/python
  register: process_layer
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
  description: What the probe observed (process, port, log).
  returned: success
  type: dict
'''

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.layer_module import run_layer_module


def main():
    run_layer_module('process', ('process', 'port', 'log'))


if __name__ == '__main__':
    main()
