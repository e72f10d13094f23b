#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: probe
short_description: Run every target-side probe of a Gunicorn service in one call
version_added: 0.1.0
description:
  - Observes the port, process, listen, healthz, boot and system layers of the runbook on the host
    itself, independent probes concurrently, and returns their facts.
  - Decides nothing; M(sre.gunicorn_doctor.report) turns the facts into the verdict and the report.
  - Samples C(/healthz) over a stability window only when a gunicorn process of the app is young, and
    boots the app on a spare port only when C(/healthz) is not a stable 200.
  - Runs the app's own code - it imports the app (the dry import) and may boot it on a spare port - as the
    service's user with the service's environment, never as the Ansible user when that is someone else (see the
    notes). O(dry_import=false) and O(preload_boot=never) turn both off.
  - The voice layer's simulated Twilio call sends one second of audio at real time unless O(voice_pace) says
    how much faster.
  - Bounded in time and size on a hostile host. Files are read only when they are regular files, at most a bounded
    head or tail (a FIFO, a device or a socket is refused with the reason). Every HTTP and WebSocket exchange has one
    wall-clock deadline (3 s for C(/healthz), each webhook and the WebSocket handshake) and byte caps, and the whole
    probe a budget of O(stability_window) + 2 x O(boot_timeout) + 60 s; a layer still running then is left out and
    reported as having run out of time.
options:
  facts_format:
    description:
      - C(dict) returns RV(facts); C(json) returns the same facts as one JSON string, RV(facts_json), for
        the C(facts_json) option of M(sre.gunicorn_doctor.report).
      - Ansible copies and templates a registered dict node by node on the controller, a string as one value; the
        C(diagnose) role (and so C(audit.yml) across a fleet) uses C(json).
    type: str
    choices: [dict, json]
    default: dict
  stabilize:
    description:
      - Set by the C(stabilize) role for its first diagnosis - C(inputs) and C(values), the role's variables its
        plan decides from. After the probes, the call also finds what runs the service (the answer of
        M(sre.gunicorn_doctor.service_apply) with C(state=found)) and,
        when the plan will be the sync service pass alone, makes that pass in check mode - RV(stabilize_preview).
        Read-only; nothing of it runs in check mode.
    type: dict
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
extends_documentation_fragment:
  - sre.gunicorn_doctor.probe
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
'''

EXAMPLES = r'''
- name: Probe the voice app
  sre.gunicorn_doctor.probe:
    app: AgentLocator.main:app
    chdir: /srv/agentlocator
    python: /srv/agentlocator/.venv/bin/python
    env_file: /srv/agentlocator/.env
    log_file: /var/log/agentlocator/gunicorn.log
  register: doctor_probe

- name: Probe it and judge it, the facts passed on as one JSON string
  sre.gunicorn_doctor.probe:
    app: AgentLocator.main:app
    chdir: /srv/agentlocator
    facts_format: json
  register: doctor_probe_json

- name: Judge and write the report
  sre.gunicorn_doctor.report:
    facts_json: "{{ doctor_probe_json.facts_json }}"
'''

RETURN = r'''
facts:
  description:
    - What each probe observed, by layer (port, process, log, listen, healthz, boot, system), and C(timings).
    - C(ran_out_of_time) (layer -> why) names the layers whose probe had not finished within the budget.
  returned: success
  type: dict
  sample:
    port: {port: 8123, source: /srv/agentlocator/.env, valid: true}
    healthz: {url: "http://127.0.0.1:8123/healthz", samples: [{status: 200, latency_ms: 2.1}]}
    timings: {process: 0.03, healthz: 0.01, dry_import: 0.41, total: 0.45}
stabilize_preview:
  description:
    - With O(stabilize) - C(service), what runs the service; C(pass), the options and the check-mode result of the sync
      pass when it is the plan's only step. Empty when the service cannot be found (stabilize then asks again).
  returned: success and O(stabilize)
  type: dict
  sample: {service: {manager: standalone, running: true, pid: 4242}, pass: {args: {}, result: {changed: false}}}
facts_json:
  description: With O(facts_format=json), RV(facts) as one JSON string (instead of RV(facts)).
  returned: success and O(facts_format=json)
  type: str
  sample: '{"port": {"port": 8123, "source": "/srv/agentlocator/.env", "valid": true}, "timings": {"total": 0.45}}'
'''

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.psutil_dep import require_psutil
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.module import collect_facts, facts_as_json, new_module

SPEC = dict(facts_format=dict(type='str', default='dict', choices=['dict', 'json']), stabilize=dict(type='dict'))


def stabilize_preview(module, facts):
    """The `stabilize` option's look at the service (stabilize/preview.py), imported only when asked: a diagnosis
    alone does not compile it on the host."""
    from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import preview
    psutil = require_psutil(module)
    return preview.look(psutil, module.run_command, module.get_bin_path('systemctl'), facts, module.params['stabilize'],
                        module.warn)


def main():
    module = new_module(SPEC)
    facts = collect_facts(module)
    extra = {}
    if module.params['stabilize'] and not module.check_mode:
        extra['stabilize_preview'] = stabilize_preview(module, facts)
    if module.params['facts_format'] == 'json':
        module.exit_json(changed=False, facts_json=facts_as_json(module, facts), **extra)
    module.exit_json(changed=False, facts=facts, **extra)


if __name__ == '__main__':
    main()
