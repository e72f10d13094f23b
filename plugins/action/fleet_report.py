# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of audit.yml: every host's report from hostvars -> audit.json/md/xml/html, once."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json
import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils import fleet
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.redact import redact

from collections.abc import Mapping


def write_atomically(path, text):
    """Readers (a dashboard, the next audit) never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.%s.' % os.path.basename(path))
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def plain(value):
    """Ansible's tagged/unsafe wrappers -> plain JSON types."""
    if isinstance(value, Mapping):
        return dict((plain(k), plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value) if isinstance(value, str) else to_native(value)


def host_report(host, host_vars):
    """-> (report, synthesized): the diagnose role's report, or one made for a host without it."""
    registered = host_vars.get('doctor_report') if host_vars is not None else None
    if isinstance(registered, Mapping) and isinstance(registered.get('report'), Mapping):
        return plain(registered['report']), False
    error = host_vars.get('__doctor_audit_error') if host_vars is not None else None
    error = plain(error) if isinstance(error, Mapping) else {}
    message = error.get('msg') or ''
    if error.get('kind') == 'unreachable':
        return fleet.unreachable_report(host, _strip_prefix(message)), True
    if error.get('kind') == 'timeout':   # the probe task's `timeout` fired
        return fleet.unreachable_report(host, _strip_prefix(message), 'timeout'), True
    stderr = (error.get('stderr') or '').strip()
    if stderr:
        message = '%s: %s' % (message, stderr.splitlines()[-1])
    if not message:
        message = 'no diagnosis was recorded for this host (it failed before the probe ran)'
    return fleet.not_probed_report(host, _strip_prefix(message)), True


def _strip_prefix(message):
    for prefix in ('Task failed: ',):
        if message.startswith(prefix):
            message = message[len(prefix):]
    return message


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
            if not os.path.isdir(report_dir):
                os.makedirs(report_dir)
            for host in hosts:
                report, synthesized = host_report(host, hostvars[host] if host in hostvars else None)
                if synthesized:
                    # (the diagnose role's reports were redacted by the report action already)
                    report = redact(report)
                    # The diagnose role wrote nothing for this host: its files must not be last run's.
                    base = os.path.join(report_dir, host)
                    write_atomically(base + '.json', json.dumps(report, indent=2) + '\n')
                    write_atomically(base + '.md', fleet.error_markdown(report))
                    written += [base + '.json', base + '.md']
                reports.append(report)
            previous, warning = self._read_previous(previous_path)
            if warning:
                result.setdefault('warnings', []).append(warning)
            reports += fleet.carried_reports(previous, reports, fleet_hosts)
            generated_at = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
            audit = fleet.build_audit(reports, previous, generated_at=generated_at, report_dir=report_dir)
            paths = dict((ext, os.path.join(report_dir, 'audit.%s' % ext)) for ext in ('json', 'md', 'xml', 'html'))
            write_atomically(paths['json'], json.dumps(audit, indent=2) + '\n')
            write_atomically(paths['md'], fleet.markdown(audit))
            write_atomically(paths['xml'], fleet.junit_xml(audit))
            write_atomically(paths['html'], fleet.html_page(audit))
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
                write_atomically(path, ''.join('%s\n' % host for host in failing))
                return path
            if os.path.lexists(path):
                os.unlink(path)
        except (IOError, OSError) as e:
            raise AnsibleActionFail('doctor_report_dir=%s cannot be written: %s' % (report_dir, to_native(e)))
        return None
