#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: stabilize_plan
short_description: Decide what the stabilize role does, step by step
version_added: 0.2.0
description:
  - Runs on the controller (an action plugin). The stabilize role's decisions - the service manager, the port,
    the worker class, the runner's environment, what an earlier eventlet failure means, how long verify must watch,
    the actions taken, the rollback and the summary - are made here; the role's tasks carry them out.
  - Each step takes the plan an earlier step returned (O(plan)) and the results of the tasks that ran since, and
    returns the next plan.
  - O(step=check) comes before anything is read - a service name or value in O(values) that would inject into the
    runner's files fails the step in one line - then looks for O(values)'s C(log_file) on the host (a C(test -e), no
    module) and returns it as C(log_file), or an empty string when it does not exist yet.
  - O(step=decide) takes what runs the service - the answer of M(sre.gunicorn_doctor.service_info) - from O(preview),
    what the diagnosis' own call found, else asks the host with M(sre.gunicorn_doctor.service_apply) C(state=found)
    (not when the diagnosis found a cause configuration cannot fix); when eventlet is wanted, it reads
    O(memory_file), the record of an earlier run's eventlet failure. When the plan's only step is the sync pass
    and O(preview) checked that very pass (the same options) and found it changes nothing while the diagnosis saw
    the master's stable 200, the pass is recorded as made and the plan says C(previewed) - nothing is left to do.
  - O(step=failed) undoes this run's last service pass on the host when the plan says so (M(sre.gunicorn_doctor.service_apply)
    C(state=rolled_back) with O(service_result)'s C(undo); a pass of an earlier run is never undone) and, for a
    service restarted on its old files, asks M(sre.gunicorn_doctor.verify) once whether it answers on its old port.
  - O(step=summary) returns the result, the summary, the lines to print (redacted) and the record, and writes the
    record as C(O(report_dir)/HOST.stabilize.json) the way M(sre.gunicorn_doctor.report) does with O(report_dir) (redacted,
    atomically, mode 0640; also in check mode, as it changes nothing on the host).
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
options:
  step:
    description:
      - C(check) - the names and values of O(values) checked, the log file looked for.
      - C(decide) - the first plan, from O(inputs), O(values), O(before), O(preview) and O(memory_file).
      - C(changes) - record the clean-up (O(strays), O(logs)).
      - C(environment) - record the changes to the runner's environment (O(port_fixed), O(hub_fixed)).
      - C(pins) - record the eventlet pins (O(pins), O(installed), O(removed)); the eventlet attempt begins.
      - C(pass) - record a service pass (O(service_result), O(purpose)) and decide the verify window (O(window)).
      - C(eventlet_failed), C(failed), C(rollback_failed) - record a failure (O(failed_result), O(failed_task));
        C(failed) also rolls the service back (O(service_result), O(app), O(healthz_path)).
      - C(summary) - the result, the summary and the report's record.
    type: str
    required: true
    choices: [check, decide, changes, environment, pins, pass, eventlet_failed, failed, rollback_failed, summary]
  values:
    description:
      - What the runner's files will hold, by the names of their options in M(sre.gunicorn_doctor.service_apply)
        (name, app, chdir, python, service_dir, log_file, env_file, unit_dir, program_dir, supervisord_conf,
        supervisorctl, user, group) and C(archive_dir).
      - With O(step=decide), also C(manager), C(workers), C(timeout), C(grace) and C(archive_keep) - the options that
        find the service and the service pass' variables (the stabilize role's C(__stabilize_values)).
    type: dict
    version_added: 0.3.0
  plan:
    description: The plan the previous step returned. Required for every step but C(check) and C(decide).
    type: dict
  inputs:
    description:
      - The role's inputs, without the C(doctor_) prefix (worker_class, port, env_file, log_file, chdir, python,
        service_dir, extra_logs, eventlet_hub, eventlet_retry, allow_sync_fallback, fingerprint).
    type: dict
  before:
    description: The diagnosis report before any change (C(doctor_report.report)).
    type: dict
  preview:
    description:
      - The probe's RV(sre.gunicorn_doctor.probe#module:stabilize_preview) from the diagnosis, C(doctor_report.stabilize_preview) -
        C(service), what runs the service, and C(pass), the sync pass checked in check mode.
    type: dict
  memory_file:
    description: The record of an earlier run's eventlet failure on the host.
    type: path
  strays:
    description: The result of M(sre.gunicorn_doctor.stop_strays).
    type: dict
  logs:
    description: The result of M(sre.gunicorn_doctor.archive_logs).
    type: dict
  port_fixed:
    description: Whether C(PORT) was set in the env file.
    type: bool
  hub_fixed:
    description: The env files where C(EVENTLET_HUB=select) was replaced.
    type: list
    elements: path
  pins:
    description: The result of M(sre.gunicorn_doctor.eventlet_pins_info).
    type: dict
  installed:
    description: Whether the pins were installed.
    type: bool
  removed:
    description: Whether gevent/uvloop were removed.
    type: bool
  purpose:
    description: Why the pass runs - the first command (C(sync), C(eventlet)), the switch to eventlet, the fallback.
    type: str
    choices: [sync, eventlet, switch, fallback]
  service_result:
    description: The gunicorn_service role's C(gunicorn_service_result) of the pass (C(failed) - the pass to undo).
    type: dict
  app:
    description: WSGI target, for the verification after a rollback.
    type: str
    version_added: 0.3.0
  window:
    description: The verify window when something changed (C(doctor_stability_window)); 0 when nothing did. Also for O(step=decide).
    type: int
  verified:
    description: The last result of M(sre.gunicorn_doctor.verify); a skipped or failed one is not kept.
    type: dict
  failed_result:
    description: The failed task's result (C(ansible_failed_result)).
    type: dict
  failed_task:
    description: The failed task's name.
    type: str
  after:
    description: The diagnosis report after the changes.
    type: dict
  rollback:
    description: The rollback's result; by default the one C(failed) recorded in the plan.
    type: dict
  rolled_back:
    description: The result of M(sre.gunicorn_doctor.verify) after the rollback; by default the one C(failed) recorded.
    type: dict
  healthz_path:
    description: Health endpoint, for the summary.
    type: str
    default: /healthz
  report_dir:
    description: Where O(step=summary) writes C(HOST.stabilize.json) (created owner/group-only when missing).
    type: path
    default: ./doctor-reports
    version_added: 0.3.0
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details: Nothing changes; the summary says what would be done.
  diff_mode:
    support: none
  platform:
    platforms: posix
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
'''

EXAMPLES = r'''
- name: Decide
  sre.gunicorn_doctor.stabilize_plan:
    step: decide
    before: "{{ doctor_report.report }}"
    inputs: {worker_class: auto, port: "", env_file: /srv/app/.env, chdir: /srv/app, service_dir: /var/lib/gunicorn-doctor/app}
    values: {app: "app:app", chdir: /srv/app, python: python3, name: app, service_dir: /var/lib/gunicorn-doctor/app}
    preview: "{{ doctor_report.stabilize_preview | default({}) }}"
  register: stabilize

- name: Sum up
  sre.gunicorn_doctor.stabilize_plan:
    step: summary
    plan: "{{ stabilize.plan }}"
  register: stabilize
'''

RETURN = r'''
log_file:
  description: With O(step=check) - the log file to diagnose, an empty string when it does not exist yet.
  returned: step=check
  type: str
stamp:
  description: With O(step=check) - this run's name for its log archive, UTC C(YYYYMMDDTHHMMSSZ) (the C(stamp) of O(inputs)).
  returned: step=check
  type: str
plan:
  description:
    - The plan. Among its keys - C(want), C(base) (the worker classes wanted and started with), C(port), C(env),
      C(unfixable), C(actions), C(eventlet), C(verify_window), C(previewed) (the pass was checked by the diagnosis'
      call and changes nothing, so nothing is left to do), C(carry_out) (whether the role carries out the plan); after C(summary) also C(result), C(summary),
      C(lines), C(record), C(fail) (the message the run fails with, or null), C(report_path) (the report written)
      and C(said) (what the run says last - the failure first when it fails - and the report's path).
  returned: success
  type: dict
'''
