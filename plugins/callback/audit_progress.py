# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One line per host as its diagnosis finishes, with the verdict: an audit of 100 hosts shows its progress."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: audit_progress
type: notification
short_description: One line per host as its diagnosis finishes, with its verdict
description:
  - While C(audit.yml) (or C(diagnose.yml)) runs, prints a line for each host the moment its report is judged,
    its probe finds it unreachable, or its diagnosis stops; how many hosts are done and the seconds since the
    play started, then the host, its verdict, the first failing layer and the top cause (or why there is no
    diagnosis).
  - A callback rather than a task per host, so the line costs the controller no extra task (no worker process
    per host) at any fleet size, and hosts that finish early are shown early (strategy free).
  - Enable it with C(callbacks_enabled = sre.gunicorn_doctor.audit_progress) in C(ansible.cfg) (this
    collection's own does), or C(ANSIBLE_CALLBACKS_ENABLED) in an AWX/Automation Platform job template's
    environment. It prints beside any stdout callback.
requirements:
  - enabled in callbacks_enabled
'''

import time

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import filter_loader, test_loader

from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.fleet import progress_line, registered_report
# The report action and what it imports (the judges, the writers), loaded once here, in the controller's main
# process: each host's report task runs in a worker forked from it, which inherits them instead of importing
# them again (on every host; the plugin loader takes a module already in sys.modules).
from ansible_collections.sre.gunicorn_doctor.plugins.action import report as _report_action  # noqa: F401 pylint: disable=unused-import


def preload_jinja_plugins():
    """Ansible's Jinja filters and tests, loaded once here in the controller's main process. Each host's task runs in
    a worker forked from it, and a worker whose loader has not loaded them yet loads every filter or test plugin file
    for the first template that uses one (the report task's `is reachable`, the probe task's filters): ~10-15 ms of
    controller CPU per host and task."""
    try:
        filter_loader.get('ansible.builtin.bool')
        test_loader.get('ansible.builtin.reachable')
    except Exception:  # pylint: disable=broad-except
        pass   # only a head start: a worker loads what it needs anyway


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'notification'
    CALLBACK_NAME = 'sre.gunicorn_doctor.audit_progress'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._started = time.monotonic()
        self._done = set()
        preload_jinja_plugins()

    def _finished(self, host, report=None, unreachable=None, failed=None):
        if host in self._done:
            return
        self._done.add(host)
        self._display.display(progress_line(len(self._done), time.monotonic() - self._started, host, report=report,
                                            unreachable=unreachable, failed=failed))

    def v2_runner_on_ok(self, result):
        report = registered_report(result._result)   # None for any task but the report action's diagnosis
        if report is not None:
            self._finished(result._host.get_name(), report=report)

    def v2_runner_on_unreachable(self, result):
        self._finished(result._host.get_name(), unreachable=result._result.get('msg') or 'unreachable')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        # Only the diagnosis' own failures (its argument check, probe or report): not the audit's last task,
        # which fails the play on purpose when a host is down.
        role = getattr(result._task, '_role', None)
        if not ignore_errors and role is not None and role.get_name().endswith('diagnose'):
            self._finished(result._host.get_name(), failed=result._result.get('msg') or 'failed')
