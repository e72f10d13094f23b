#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: report
short_description: Turn probe facts into the verdict and write the host's JSON and Markdown reports
version_added: 0.1.0
description:
  - Runs on the controller (an action plugin), with no round trip to the host.
  - First the external layer, from the controller (where the user stands, runbook section 0) when a public
    URL is known (O(public_base_url), else the C(PUBLIC_BASE_URL) the voice probe read on the host). It sends
    C(GET public_base_url + healthz_path) over https and the Twilio WebSocket handshake to C(ws_path) over wss
    (header C(Sec-WebSocket-Protocol) set to C(audio.twilio.com), expecting 101 with it echoed), both at once,
    with TLS verification on and short timeouts. It records status, latency, peer address, the error class
    (DNS, refused, timeout, TLS, HTTP status) and on TLS errors the certificate's subject, issuer and names.
  - With no public URL the external layer is C(skip), and its check says how to enable it.
  - Judges the facts of M(sre.gunicorn_doctor.probe) and the external facts layer by layer in ladder order,
    names the first failing layer and each cause with its evidence and remedy, and writes
    C(REPORT_DIR/HOST.json) (the contract's schema) and C(REPORT_DIR/HOST.md).
  - The verdict is C(down) only when the local C(/healthz) fails; a public URL that fails while the service
    answers locally is C(external_unreachable) (verdict C(degraded), failed layer C(external)), with evidence
    telling a proxy or port mismatch (runbook cause 7) from a URL that leads to another host (cause 10) and
    the Twilio error a call would show (31902 refused, 31901 timeout, 31910 TLS, 31920 handshake).
  - With O(stabilize) instead of O(facts), writes the stabilize role's before/after record as
    C(REPORT_DIR/HOST.stabilize.json) (no probe, no verdict).
  - Every file is redacted (passwords in URLs, tokens, keys, C(*_TOKEN)/C(*_SECRET)/C(*PASSWORD*)/C(*_KEY) values,
    Twilio C(AC...:secret) pairs, private keys), written atomically with mode C(0640) (a directory it creates is
    C(0750)), and never outside O(report_dir) - a host name with C(/), NUL or a control character, or starting
    with C(.) (C(..), C(../evil)) is refused with a one-line error rather than rewritten, since a rewritten name
    could overwrite another host's report.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
requirements:
  - requests and websocket-client on the controller for the external layer (C(requirements.txt)); when one
    is missing its check is skipped with a warning that gives the pip command, and the report is still written.
options:
  facts:
    description:
      - The C(facts) returned by M(sre.gunicorn_doctor.probe).
      - Required unless O(facts_json), O(probe), O(stabilize) or O(unreachable) is given.
    type: dict
  facts_json:
    description:
      - The same facts as one JSON string, the C(facts_json) that M(sre.gunicorn_doctor.probe) returns with
        C(facts_format=json). Mutually exclusive with O(facts).
      - Ansible hands a string from task to task as one value, where it copies and templates a dict node by node on the
        controller for every host; the C(diagnose) role passes the facts this way.
    type: str
  probe:
    description:
      - The registered result of M(sre.gunicorn_doctor.probe) as it is, reachable or not. Its RV(sre.gunicorn_doctor.probe#module:facts)
        or RV(sre.gunicorn_doctor.probe#module:facts_json) stand for O(facts) or O(facts_json), its
        RV(sre.gunicorn_doctor.probe#module:stabilize_preview) for O(stabilize_preview), and when the host could not be
        reached its message for O(unreachable). An option the task sets itself wins.
    type: dict
  vars_prefix:
    description:
      - Each of O(report_dir), O(public_base_url), O(healthz_path), O(ws_path), O(ca_bundle) and O(validate_certs) the
        task does not set takes the value of the variable O(vars_prefix) + its name (with V(doctor_),
        C(doctor_report_dir) for O(report_dir)) when it is defined and neither empty nor null. The C(diagnose) role
        passes V(doctor_) - a variable read by name costs the controller no Jinja template per host.
    type: str
  stabilize:
    description:
      - The record of a stabilize run (result, summary, before, after, actions, ...), written as
        C(REPORT_DIR/HOST.stabilize.json) instead of a diagnosis. Used by the C(sre.gunicorn_doctor.stabilize) role.
      - Mutually exclusive with O(facts).
    type: dict
  host:
    description:
      - The host name in the report and its file names.
      - Defaults to the inventory hostname.
    type: str
  report_dir:
    description: Directory on the controller for the reports; created when missing.
    type: path
    default: ./doctor-reports
  public_base_url:
    description:
      - Public URL of the service, e.g. C(https://voice.example.com) (variable C(doctor_public_base_url)).
      - Defaults to the C(PUBLIC_BASE_URL) of the service environment, as the voice probe read it on the host.
      - A bare host name means C(https://).
    type: str
  healthz_path:
    description: Health endpoint path, appended to O(public_base_url) (variable C(doctor_healthz_path)).
    type: str
    default: /healthz
  ws_path:
    description: Twilio media-stream WebSocket path, appended to O(public_base_url) as C(wss://) (variable C(doctor_ws_path)).
    type: str
    default: /ws/twilio-media
  ca_bundle:
    description:
      - PEM file on the controller with the CA that signed the public certificate, for a service behind a
        private CA (variable C(doctor_ca_bundle)).
      - Twilio itself trusts public CAs only, so a certificate that passes only with this bundle still fails
        real calls with Twilio error 31910.
    type: path
  validate_certs:
    description: Verify the public TLS certificate (variable C(doctor_validate_certs)). Twilio always does.
    type: bool
    default: true
  external_timeout:
    description: Seconds each external check may take (connect, and again for the answer).
    type: float
    default: 5
  unreachable:
    description:
      - The message of a probe that found the host unreachable (C(audit.yml) goes on past such a host). Instead of
        judging facts, writes the host's report with verdict C(unreachable) and C(error) saying what happened
        (C(unreachable), C(timeout) or C(connection_lost), from the message), as M(sre.gunicorn_doctor.fleet_report)
        would make it.
    type: str
  return_report:
    description:
      - Return the report as RV(report) too. Set V(false) to get it only as RV(report_json), one string that Ansible
        does not walk (as C(audit.yml) does, for every host of a fleet).
    type: bool
    default: true
  stabilize_preview:
    description:
      - The probe's RV(sre.gunicorn_doctor.probe#module:stabilize_preview), returned as it is (RV(stabilize_preview)) - the
        C(diagnose) role hands it to the C(stabilize) role in its result C(doctor_report).
    type: dict
  keep_fact:
    description:
      - Also return the verdict as the host fact C(doctor_audit) (verdict, failed_layer, causes, error), kept in the
        fact cache when one is configured (AWX fact storage). C(audit.yml) sets it.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details: The report is written in check mode too; nothing on the host changes.
  diff_mode:
    support: none
  platform:
    platforms: all
    details: Nothing runs on the host; the report is written on the controller.
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
'''

EXAMPLES = r'''
- name: Write the report
  sre.gunicorn_doctor.report:
    facts: "{{ doctor_probe.facts }}"
    report_dir: ./doctor-reports
  register: doctor_report

- name: Write the report from the facts as one JSON string (probe with facts_format=json), returned as report_json only
  sre.gunicorn_doctor.report:
    facts_json: "{{ doctor_probe.facts_json }}"
    return_report: false
  register: doctor_report

- name: Write the report and check the public URL of a service behind a private CA
  sre.gunicorn_doctor.report:
    facts: "{{ doctor_probe.facts }}"
    public_base_url: https://voice.example.com
    ca_bundle: /etc/ssl/private-ca.pem

- name: Write the record of a stabilize run
  sre.gunicorn_doctor.report:
    stabilize: {result: stabilized, summary: "stable: /healthz answers 200 on port 8123", actions: []}
    report_dir: ./doctor-reports
'''

RETURN = r'''
report:
  description: The report (host, verdict, failed_layer, causes, layers), or with O(stabilize) the redacted record.
  returned: success, unless O(return_report=false)
  type: dict
stabilize_preview:
  description: O(stabilize_preview), as it was given.
  returned: success, with O(stabilize_preview)
  type: dict
report_json:
  description:
    - The report as one JSON string, the exact text of C(HOST.json). M(sre.gunicorn_doctor.fleet_report) reads it.
  returned: success, without O(stabilize)
  type: str
  sample: '{"host": "web1", "verdict": "healthy", "failed_layer": null, "causes": [], "layers": []}'
paths:
  description: The JSON and Markdown files written (with O(stabilize), the C(HOST.stabilize.json) file).
  returned: success
  type: list
  elements: str
ladder:
  description: Lines to print, namely the verdict, one line per layer, each cause with its remedy.
  returned: success, without O(stabilize)
  type: list
  elements: str
ansible_facts:
  description: With O(keep_fact), the host fact C(doctor_audit).
  returned: success, with O(keep_fact)
  type: dict
  contains:
    doctor_audit:
      description: The host's verdict, first failing layer, cause ids, and why there is no diagnosis (C(null) when there is one).
      type: dict
      returned: success, with O(keep_fact)
'''
