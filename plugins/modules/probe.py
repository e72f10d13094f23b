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
  vars_prefix:
    description:
      - Each option the task does not set takes the value of the variable O(vars_prefix) + the option's name (with
        V(doctor_), C(doctor_app) for O(app)), read by the action plugin on the controller, when it is defined and
        neither empty nor null. The C(diagnose) and C(stabilize) roles pass V(doctor_).
      - One templated argument per option (C("{{ doctor_app }}")) is a Jinja template compiled for every host on the
        controller; a variable read by name is not.
    type: str
  stabilize:
    description:
      - Set by the C(stabilize) role for its first diagnosis - C(inputs) and C(values), the role's variables its
        plan decides from. The call then runs as M(sre.gunicorn_doctor.stabilize_probe) (this module's action
        plugin picks it) - the same probes, and then stabilize's look at the service, RV(stabilize_preview).
      - Ignored in check mode.
    type: dict
  report:
    description:
      - The options of M(sre.gunicorn_doctor.report), without O(sre.gunicorn_doctor.report#module:probe). The action
        plugin then judges the probe's result and writes the host's report in the same task, and returns what
        M(sre.gunicorn_doctor.report) returns instead of the facts. A host that cannot be reached gets a report that
        says so (the task succeeds); a probe that fails on its input fails the task, with no report.
      - C(audit.yml) sets it. Each task per host costs the controller's main process a round of variables, a worker
        fork and a result, and across a fleet that process is what the audit waits for.
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

- name: Probe it with the options from doctor_ variables (doctor_app, doctor_chdir, ...), as the diagnose role does
  sre.gunicorn_doctor.probe:
    vars_prefix: doctor_
  register: doctor_probe_vars

- name: Judge and write the report
  sre.gunicorn_doctor.report:
    facts_json: "{{ doctor_probe_json.facts_json }}"

- name: Probe, judge and write the report in one task, the verdict kept as the host fact doctor_audit
  sre.gunicorn_doctor.probe:
    vars_prefix: doctor_
    facts_format: json
    report:
      vars_prefix: doctor_
      keep_fact: true
  register: doctor_report
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
  description: With O(stabilize) - what M(sre.gunicorn_doctor.stabilize_probe) returns as RV(stabilize_preview).
  returned: success and O(stabilize), not in check mode
  type: dict
facts_json:
  description: With O(facts_format=json), RV(facts) as one JSON string (instead of RV(facts)).
  returned: success and O(facts_format=json)
  type: str
  sample: '{"port": {"port": 8123, "source": "/srv/agentlocator/.env", "valid": true}, "timings": {"total": 0.45}}'
report_json:
  description:
    - With O(report), instead of the facts - what M(sre.gunicorn_doctor.report) returns (also RV(paths), RV(ladder),
      C(report) and its host fact C(doctor_audit) as it says), namely the report as one JSON string, the text of
      C(HOST.json).
  returned: success and O(report)
  type: str
  sample: '{"host": "web1", "verdict": "healthy", "failed_layer": null, "causes": [], "layers": []}'
paths:
  description: With O(report), the JSON and Markdown report files written.
  returned: success and O(report)
  type: list
  elements: str
ladder:
  description: With O(report), lines to print - the verdict, one line per layer, each cause with its remedy.
  returned: success and O(report)
  type: list
  elements: str
'''

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.module import (
    collect_facts, exit_with_facts, new_module)

SPEC = dict(facts_format=dict(type='str', default='dict', choices=['dict', 'json']), stabilize=dict(type='dict'),
            vars_prefix=dict(type='str'), report=dict(type='dict'))   # the last three: read by the action plugin


def main():
    module = new_module(SPEC)
    if module.params['stabilize'] and not module.check_mode:
        # The action plugin runs stabilize_probe for it: this module ships without stabilize's code.
        module.fail_json(msg='stabilize is answered by sre.gunicorn_doctor.stabilize_probe: call the module through '
                             'its action (sre.gunicorn_doctor.probe in a task), not as ansible.legacy.probe')
    exit_with_facts(module, collect_facts(module))


if __name__ == '__main__':
    main()
