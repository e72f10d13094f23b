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
  - Judges the facts of M(sre.gunicorn_doctor.probe) layer by layer in ladder order, names the first
    failing layer and each cause with its evidence and remedy, and writes
    C(REPORT_DIR/HOST.json) (the contract's schema) and C(REPORT_DIR/HOST.md).
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
options:
  facts:
    description: The C(facts) returned by M(sre.gunicorn_doctor.probe).
    type: dict
    required: true
  host:
    description:
      - The host name in the report and its file names.
      - Defaults to the inventory hostname.
    type: str
  report_dir:
    description: Directory on the controller for the reports; created when missing.
    type: path
    default: ./doctor-reports
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
'''

RETURN = r'''
report:
  description: The report (host, verdict, failed_layer, causes, layers).
  returned: success
  type: dict
paths:
  description: The JSON and Markdown files written.
  returned: success
  type: list
  elements: str
ladder:
  description: Lines to print, namely the verdict, one line per layer, each cause with its remedy.
  returned: success
  type: list
  elements: str
'''
