#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: fleet_report
short_description: Write the fleet-wide audit (JSON, Markdown, JUnit XML, HTML) from every host's report
version_added: 0.2.0
description:
  - Runs on the controller (an action plugin), once per play (use it with C(run_once)), with no round trip to any host.
  - Reads each host's report from its host variables, namely C(doctor_report), the result that the
    C(sre.gunicorn_doctor.diagnose) role registers (its C(report_json), else its C(report)). A host without one gets a report here, written as
    C(REPORT_DIR/HOST.json) and C(HOST.md) too; if the host variable C(__doctor_audit_error) says
    C(kind=unreachable) or C(kind=timeout), the verdict is C(unreachable) with the connection error as a
    check's detail, and the report's C(error.kind) says what happened - C(timeout) (the host accepted
    the connection or had been answering, then stalled), C(connection_lost) (the connection dropped while
    the probe ran) or C(unreachable); otherwise (the probe stopped on its input, e.g. C(doctor_chdir)
    missing because the app is not deployed, or could not run, e.g. C(psutil_missing)) the verdict is
    C(down) with no failed layer, and the report's C(error) says why.
  - Writes C(REPORT_DIR/audit.json) (every report, a summary by verdict, failed layer and cause, the
    drift since the previous C(audit.json)), C(audit.md), C(audit.xml) (JUnit, a test suite per host and a
    test case per layer) and C(audit.html) (one self-contained page, no script, no external asset).
  - Writes C(REPORT_DIR/audit.retry), the hosts down or unreachable, one a line, so that
    C(--limit @REPORT_DIR/audit.retry) audits only them again; removes it when no host failed.
  - A run limited to some hosts (C(--limit)) still reports the whole fleet when O(fleet_hosts) is given;
    the hosts of O(fleet_hosts) it did not audit keep their report from the previous C(audit.json),
    marked C(carried_from) (that audit's time) and labelled C(earlier audit).
  - Never fails because hosts are down; it returns them in C(failing) so the play decides.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
options:
  hosts:
    description:
      - The inventory host names to report on.
      - Defaults to C(ansible_play_hosts_all), every host the play targets, reachable or not.
    type: list
    elements: str
  report_dir:
    description: Directory on the controller for the fleet files and the reports of hosts without a diagnosis; created when missing.
    type: path
    default: ./doctor-reports
  previous:
    description:
      - A previous C(audit.json) to compare with (the drift section).
      - Defaults to C(REPORT_DIR/audit.json), the audit this run replaces. No drift when there is none.
    type: path
  fleet_hosts:
    description:
      - Every host of the fleet, whether this run audits it or not (the play's host pattern without C(--limit)),
        e.g. C("{{ query('ansible.builtin.inventory_hostnames', 'all') }}").
      - Those not in O(hosts) but in the previous C(audit.json) keep their report from it. Unset, the audit covers O(hosts) only.
    type: list
    elements: str
  playbook:
    description:
      - The playbook this task runs in, for the rerun command printed with the C(audit.retry) path
        (C(ansible-playbook -i INVENTORY PLAYBOOK --limit @REPORT_DIR/audit.retry)); no command without it.
    type: path
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details: The files are written in check mode too; nothing on any host changes.
  diff_mode:
    support: none
  platform:
    platforms: all
    details: Nothing runs on the hosts; the files are written on the controller.
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
'''

EXAMPLES = r'''
- name: Write audit.json, audit.md, audit.xml and audit.html
  sre.gunicorn_doctor.fleet_report:
    hosts: "{{ ansible_play_hosts_all }}"
    report_dir: ./doctor-reports
  run_once: true
  delegate_to: localhost
  register: doctor_audit

- name: Fail when a host is down or unreachable
  ansible.builtin.fail:
    msg: "down or unreachable: {{ doctor_audit.failing | join(', ') }}"
  when: doctor_audit.failing | length > 0
  run_once: true
'''

RETURN = r'''
paths:
  description: The fleet files written, by format.
  returned: success
  type: dict
  sample: {json: /srv/audit/audit.json, md: /srv/audit/audit.md, xml: /srv/audit/audit.xml, html: /srv/audit/audit.html}
host_reports:
  description: The C(HOST.json) and C(HOST.md) files written for hosts without a diagnosis.
  returned: success
  type: list
  elements: str
summary:
  description: Counts by verdict, by failed layer and by cause (hosts hit, ranked), and the hosts down, unreachable or not diagnosed.
  returned: success
  type: dict
  sample:
    hosts: 3
    by_verdict: {down: 1, unreachable: 1, degraded: 0, healthy: 1}
    by_failed_layer: {listen: 1}
    by_cause: {wrong_port: 1}
drift:
  description: New, fixed and changed hosts (and hosts added or removed) since the previous audit; null without one.
  returned: success
  type: dict
down_hosts:
  description: Hosts whose verdict is down.
  returned: success
  type: list
  elements: str
unreachable_hosts:
  description: Hosts Ansible could not reach.
  returned: success
  type: list
  elements: str
failing:
  description: Hosts down or unreachable, what the audit's exit status is about.
  returned: success
  type: list
  elements: str
retry:
  description: The C(audit.retry) file listing the C(failing) hosts; null when no host failed.
  returned: success
  type: str
  sample: /srv/audit/audit.retry
rerun:
  description: The command that audits only the failing hosts again; null when none failed or O(playbook) is not set.
  returned: success
  type: str
  sample: ansible-playbook -i /srv/inventory /srv/playbooks/audit.yml --limit @/srv/audit/audit.retry
lines:
  description:
    - Lines to print, namely the headline, one line per host worst first (the first 50; the rest are in C(audit.md)), the drift,
      the files and the rerun command.
    - The whole fleet table is C(table) in C(audit.json).
  returned: success
  type: list
  elements: str
'''
