#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: stabilize_probe
short_description: The probe, and in the same call what stabilize needs to know of the service
version_added: 0.4.0
description:
  - What the C(stabilize) role's first diagnosis runs on the host - M(sre.gunicorn_doctor.probe) runs it when given
    O(stabilize) (its action plugin picks this module), so a diagnosis alone does not ship stabilize's code to every host.
  - Runs every probe of M(sre.gunicorn_doctor.probe) and returns the same facts.
  - Then, read-only, finds what runs the service (the answer of M(sre.gunicorn_doctor.service_apply) with
    C(state=found), what the clean-up would find to do included) and, when the plan stabilize would make from these
    facts is the sync service pass alone, makes that pass in check mode. The stabilize role plans again from the
    judged diagnosis and skips the pass only when its own plan sends the very same options and the pass changes
    nothing - a second run on a stable service reaches the host once.
options:
  facts_format:
    description: As for M(sre.gunicorn_doctor.probe).
    type: str
    choices: [dict, json]
    default: dict
  stabilize:
    description:
      - C(inputs) and C(values), the stabilize role's variables its plan decides from (its C(__stabilize_inputs) and
        C(__stabilize_values)).
    type: dict
    required: true
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
extends_documentation_fragment:
  - sre.gunicorn_doctor.probe
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
notes:
  - In check mode only the probes run.
'''

EXAMPLES = r'''
- name: Probe the service and look at it for stabilize (what the probe action runs when given stabilize)
  sre.gunicorn_doctor.stabilize_probe:
    app: AgentLocator.main:app
    chdir: /srv/agentlocator
    facts_format: json
    stabilize:
      inputs: {worker_class: auto, port: "", env_file: "", log_file: "", chdir: /srv/agentlocator,
               service_dir: /var/lib/gunicorn-doctor/agentlocator, archive_dir: /var/lib/gunicorn-doctor/agentlocator/log-archive,
               stamp: 20260101T000000Z}
      values: {app: AgentLocator.main:app, chdir: /srv/agentlocator, python: python3, name: agentlocator,
               service_dir: /var/lib/gunicorn-doctor/agentlocator, manager: auto, workers: 0, timeout: 0, grace: 10,
               archive_keep: 5, log_file: "", env_file: "", unit_dir: /etc/systemd/system, program_dir: "",
               supervisorctl: "", supervisord_conf: "", user: "", group: ""}
  register: doctor_probe
'''

RETURN = r'''
facts:
  description: As M(sre.gunicorn_doctor.probe) returns them.
  returned: success and O(facts_format=dict)
  type: dict
facts_json:
  description: As M(sre.gunicorn_doctor.probe) returns them, one JSON string.
  returned: success and O(facts_format=json)
  type: str
stabilize_preview:
  description:
    - C(service), what runs the service (redacted like the facts); C(pass), the options and the check-mode result of
      the sync pass when it is the plan's only step. Empty when the service cannot be found (stabilize then asks
      again and says why).
  returned: success, not in check mode
  type: dict
  sample: {service: {manager: standalone, running: true, pid: 4242}, pass: {args: {}, result: {changed: false}}}
'''

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.psutil_dep import require_psutil
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.module import (
    collect_facts, exit_with_facts, new_module)
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import preview

SPEC = dict(facts_format=dict(type='str', default='dict', choices=['dict', 'json']),
            stabilize=dict(type='dict', required=True))


def main():
    module = new_module(SPEC)
    facts = collect_facts(module)
    if module.check_mode:
        exit_with_facts(module, facts)
    try:
        found = preview.look(require_psutil(module), module.run_command, module.get_bin_path('systemctl'), facts,
                             module.params['stabilize'], module.warn)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        module.fail_json(msg="stabilize: not the stabilize role's inputs and values (%s: %s) - pass its "
                             "__stabilize_inputs and __stabilize_values" % (type(e).__name__, e))
    exit_with_facts(module, facts, stabilize_preview=found)


if __name__ == '__main__':
    main()
