# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of audit.yml: every host's report from hostvars -> audit.json/md/xml/html, once."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json
import os

from collections.abc import Mapping

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase

from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils import fleet
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.report_files import (
    ReportPathError, host_report_path, plain, report_dir_path, write_private)


def host_report(host, host_vars):
    """-> (report, synthesized): the diagnose role's report, or one made for a host without it."""
    report = fleet.registered_report(host_vars.get('doctor_report')) if host_vars is not None else None
    if report is not None:
        return report, False
    error = host_vars.get('__doctor_audit_error') if host_vars is not None else None
    error = plain(error) if isinstance(error, Mapping) else _unreachable_probe(host_vars)
    message = error.get('msg') or ''
    if error.get('kind') == 'unreachable':
        return fleet.unreachable_report(host, fleet.strip_task_prefix(message)), True
    if error.get('kind') == 'timeout':   # the probe task's `timeout` fired
        return fleet.unreachable_report(host, fleet.strip_task_prefix(message), 'timeout'), True
    stderr = (error.get('stderr') or '').strip()
    if stderr:
        message = '%s: %s' % (message, stderr.splitlines()[-1])
    if not message:
        message = 'no diagnosis was recorded for this host (it failed before the probe ran)'
    return fleet.not_probed_report(host, fleet.strip_task_prefix(message)), True


def _unreachable_probe(host_vars):
    """{kind: unreachable, msg} when the probe task found the host unreachable (audit.yml ignores that, so
    the host's result is the registered __doctor_probe, not a rescue), else {}."""
    probe = host_vars.get('__doctor_probe') if host_vars is not None else None
    if isinstance(probe, Mapping) and probe.get('unreachable'):
        return {'kind': 'unreachable', 'msg': plain(probe.get('msg')) or 'unreachable'}
    return {}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('hosts', 'report_dir', 'previous', 'fleet_hosts', 'playbook'))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        hosts = self._task.args.get('hosts')
        if hosts is None:
            hosts = task_vars.get('ansible_play_hosts_all') or []
        if isinstance(hosts, str) or not all(isinstance(h, str) for h in hosts):
            raise AnsibleActionFail('hosts must be a list of inventory host names, e.g. "{{ ansible_play_hosts_all }}"')
        fleet_hosts = self._task.args.get('fleet_hosts') or []
        if isinstance(fleet_hosts, str) or not all(isinstance(h, str) for h in fleet_hosts):
            raise AnsibleActionFail('fleet_hosts must be a list of inventory host names, e.g. '
                                    '"{{ query(\'ansible.builtin.inventory_hostnames\', \'all\') }}"')
        report_dir = os.path.abspath(os.path.expanduser(self._task.args.get('report_dir') or './doctor-reports'))
        audit_json = os.path.join(report_dir, 'audit.json')
        previous_path = self._task.args.get('previous') or audit_json
        hostvars = task_vars.get('hostvars') or {}

        reports, written = [], []
        try:
            report_dir = report_dir_path(report_dir)
            for host in hosts:
                report, synthesized = host_report(host, hostvars[host] if host in hostvars else None)
                # Redacted again: the diagnose role's reports were redacted by the report action, a report
                # synthesized here carries an error message from the host.
                report = redact(report)
                if synthesized:
                    written += self._write_host_files(report_dir, host, report, result)
                reports.append(report)
            previous, warning = self._read_previous(previous_path)
            if warning:
                result.setdefault('warnings', []).append(warning)
            reports += fleet.carried_reports(previous, reports, fleet_hosts)
            generated_at = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
            audit = fleet.build_audit(reports, previous, generated_at=generated_at, report_dir=report_dir)
            paths = dict((ext, os.path.join(report_dir, 'audit.%s' % ext)) for ext in ('json', 'md', 'xml', 'html'))
            write_private(paths['json'], json.dumps(audit, indent=2) + '\n')
            write_private(paths['md'], fleet.markdown(audit))
            write_private(paths['xml'], fleet.junit_xml(audit))
            write_private(paths['html'], fleet.html_page(audit))
        except (IOError, OSError) as e:
            raise AnsibleActionFail('doctor_report_dir=%s cannot be written: %s' % (report_dir, to_native(e)))

        summary = audit['summary']
        failing = sorted(summary['down'] + summary['unreachable'])
        retry = self._write_retry_list(report_dir, failing)
        playbook = self._task.args.get('playbook')
        rerun = fleet.rerun_command(task_vars.get('ansible_inventory_sources'), playbook, retry) \
            if (retry and playbook) else None
        result.update(
            changed=False,
            paths=paths,
            host_reports=written,
            summary=summary,
            drift=audit['drift'],
            # Not `unreachable`/`failed`: Ansible reads those keys of a result as the task's own status.
            down_hosts=summary['down'],
            unreachable_hosts=summary['unreachable'],
            failing=failing,
            retry=retry,
            rerun=rerun,
            lines=fleet.console_lines(audit, [paths['html'], paths['md'], paths['xml'], paths['json']], rerun=rerun),
        )
        return result

    @staticmethod
    def _write_host_files(report_dir, host, report, result):
        """HOST.json and HOST.md for a host the diagnose role wrote nothing for (its files must not be last
        run's); a host name that is no plain file name gets none, with a warning (the audit still lists it)."""
        try:
            paths = [host_report_path(report_dir, host, '.json'), host_report_path(report_dir, host, '.md')]
        except ReportPathError as e:
            result.setdefault('warnings', []).append('no HOST.json/HOST.md: %s' % e)
            return []
        write_private(paths[0], json.dumps(report, indent=2) + '\n')
        write_private(paths[1], fleet.error_markdown(report))
        return paths

    @staticmethod
    def _read_previous(path):
        """The previous audit.json, or None (with a warning when it exists but cannot be read)."""
        if not os.path.exists(path):
            return None, None
        try:
            with open(path) as f:
                previous = json.load(f)
        except (IOError, OSError, ValueError) as e:
            return None, 'previous audit %s not readable, no drift this time: %s' % (path, to_native(e))
        if not isinstance(previous, dict):
            return None, 'previous audit %s is not an audit.json, no drift this time' % path
        return previous, None

    @staticmethod
    def _write_retry_list(report_dir, failing):
        """REPORT_DIR/audit.retry: the hosts down or unreachable, one a line (`--limit @audit.retry` audits
        only them); removed when none failed, so no stale list reruns hosts that are fine now. -> its path or None."""
        path = os.path.join(report_dir, 'audit.retry')
        try:
            if failing:
                write_private(path, ''.join('%s\n' % host for host in failing))
                return path
            if os.path.lexists(path):
                os.unlink(path)
        except (IOError, OSError) as e:
            raise AnsibleActionFail('doctor_report_dir=%s cannot be written: %s' % (report_dir, to_native(e)))
        return None
