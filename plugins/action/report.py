# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of the diagnosis: the external layer (the public URL, probed from here), then
facts -> verdict -> JSON and Markdown reports, with no round trip to the host. With `stabilize`, the
stabilize role's before/after record -> HOST.stabilize.json instead. Every file is redacted, written
atomically with mode 0640, and named from a host name that cannot leave the report directory."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils import external_probe as external, fleet
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.report_files import (
    ReportPathError, host_file_name, host_report_path, report_dir_path, write_private, write_stabilize_record)
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.report_text import ladder, markdown
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.role_vars import options_from_vars
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges.verdict import judge


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('facts', 'facts_json', 'stabilize', 'host', 'report_dir', 'public_base_url', 'healthz_path',
                             'ws_path', 'ca_bundle', 'validate_certs', 'external_timeout', 'unreachable', 'keep_fact',
                             'return_report', 'stabilize_preview', 'probe', 'vars_prefix'))
    # The options O(vars_prefix) may fill from variables: the report's own inputs, not what a task hands on.
    FROM_VARS = {'report_dir': {'type': 'path'}, 'public_base_url': {'type': 'str'}, 'healthz_path': {'type': 'str'},
                 'ws_path': {'type': 'str'}, 'ca_bundle': {'type': 'path'}, 'validate_certs': {'type': 'bool'}}

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        self._args = self._arguments(task_vars or {})
        host = self._args.get('host') or (task_vars or {}).get('inventory_hostname')
        host = to_native(host) if host is not None else None
        report_dir = self._args.get('report_dir') or './doctor-reports'
        try:   # before the external probe: a host name that cannot name a report file is an input error
            host_file_name(host)
        except ReportPathError as e:
            raise AnsibleActionFail(str(e))
        if self._args.get('stabilize') is not None:
            return self._write_stabilize(result, host, report_dir)
        unreachable = self._args.get('unreachable')
        if unreachable:   # audit.yml: the probe found the host unreachable; its report says so
            report = redact(fleet.unreachable_report(host, fleet.strip_task_prefix(to_native(unreachable))))
            report_json, paths = self._write_report(report_dir, host, report, fleet.error_markdown(report))
            lines = ['%s: %s: %s' % (host, fleet.verdict_label(report).upper(), report['error']['message'])] + \
                ['  report: %s' % path for path in paths]
        else:
            report = self._judge(self._probe_facts(), host, task_vars or {}, result)
            report_json, paths = self._write_report(report_dir, host, report, markdown(report))
            lines = ladder(report, paths)
        # Writing the report on the controller changes nothing on the host. The report as HOST.json holds it, one
        # string: what a fleet reads (fleet.registered_report), without Ansible copying the dict node by node.
        result.update(changed=False, report_json=report_json, paths=paths, ladder=lines)
        if boolean(self._args.get('return_report', True), strict=False):
            result['report'] = report
        if self._args.get('stabilize_preview') is not None:
            # The stabilize role's look at the service from the same probe call, handed on in the role's result.
            result['stabilize_preview'] = self._args['stabilize_preview']
        if boolean(self._args.get('keep_fact', False), strict=False):
            # The verdict as a host fact (in the fact cache when one is configured, e.g. AWX fact storage): returned
            # here rather than by a set_fact task, one task per host less in audit.yml.
            result['ansible_facts'] = {'doctor_audit': fleet.audit_fact(report)}
        return result

    def _arguments(self, task_vars):
        """The task's arguments, with those the probe's registered result (`probe`) and the variables (`vars_prefix`)
        give: what the task does not set itself."""
        args = dict(self._task.args)
        probe = args.pop('probe', None)
        if probe is not None:
            if not isinstance(probe, dict):
                raise AnsibleActionFail('probe must be the registered result of sre.gunicorn_doctor.probe')
            if probe.get('unreachable'):
                args.setdefault('unreachable', probe.get('msg') or 'unreachable')
            else:
                for name in ('facts', 'facts_json', 'stabilize_preview'):
                    if probe.get(name) is not None:
                        args.setdefault(name, probe[name])
        prefix = args.pop('vars_prefix', None)
        return options_from_vars(args, self.FROM_VARS, prefix, task_vars, self._templar) if prefix else args

    def _probe_facts(self):
        """The probe's facts: `facts` (a dict) or `facts_json` (the same as one JSON string)."""
        facts, facts_json = self._args.get('facts'), self._args.get('facts_json')
        if facts is not None and facts_json is not None:
            raise AnsibleActionFail('facts and facts_json are the same facts: give one of them')
        if facts_json is not None:
            try:
                facts = json.loads(to_native(facts_json))
            except ValueError as e:
                raise AnsibleActionFail('facts_json is not JSON (%s): pass the facts_json that sre.gunicorn_doctor.probe '
                                        'returns with facts_format=json' % e)
        if not isinstance(facts, dict) or 'port' not in facts:
            raise AnsibleActionFail('facts must be the facts returned by sre.gunicorn_doctor.probe (or facts_json, '
                                    'the same as one JSON string)')
        return facts

    def _judge(self, facts, host, task_vars, result):
        """The probe's facts (+ the external layer, probed here) -> the redacted report."""
        facts = dict(facts)
        if 'external' not in facts:  # recorded facts that carry the external layer are judged as they are
            facts['external'] = self._probe_public_url(facts, task_vars, result)
            if facts['external'].get('elapsed') is not None:
                facts['timings'] = dict(facts.get('timings') or {}, external=facts['external']['elapsed'])
        return redact(judge(facts, host))

    @staticmethod
    def _write_report(report_dir, host, report, text):
        """HOST.json and HOST.md -> (the text of HOST.json, their paths)."""
        report_json = json.dumps(report, indent=2, sort_keys=False) + '\n'
        try:
            report_dir = report_dir_path(report_dir)
            paths = [host_report_path(report_dir, host, suffix) for suffix in ('.json', '.md')]
            write_private(paths[0], report_json)
            write_private(paths[1], text)
        except (IOError, OSError) as e:
            raise AnsibleActionFail('doctor_report_dir=%s cannot be written: %s' % (report_dir, to_native(e)))
        return report_json, paths

    def _write_stabilize(self, result, host, report_dir):
        """HOST.stabilize.json: the stabilize role's record, redacted (it holds verify's evidence, the
        strays' command lines, the service's result)."""
        record = self._args['stabilize']
        if not isinstance(record, dict) or any(self._args.get(k) is not None for k in ('facts', 'facts_json')):
            raise AnsibleActionFail('stabilize must be the stabilize role\'s record (a dict), given without facts')
        try:
            path, record = write_stabilize_record(report_dir, host, record)
        except (IOError, OSError) as e:
            raise AnsibleActionFail('doctor_report_dir=%s cannot be written: %s' % (report_dir, to_native(e)))
        result.update(changed=False, report=record, paths=[path])
        return result

    def _probe_public_url(self, facts, task_vars, result):
        """The external layer, probed from the controller: the public URL from where the user stands (runbook
        section 0), its https /healthz and wss handshake, concurrently, with short timeouts. -> facts['external']."""
        args = self._args
        url, source = external.public_base_url(args.get('public_base_url'), facts)
        if not url:
            return {'skipped': external.skip_reason(facts)}
        options = self._external_options(url, source)
        for library, command in sorted(external.missing_libraries().items()):
            result.setdefault('warnings', []).append(
                'external layer: %s is missing on the controller, its check is skipped: %s' % (library, command))
        target = external.target_addresses(
            self._play_context.connection, self._play_context.remote_addr or task_vars.get('ansible_host'),
            known=list(task_vars.get('ansible_all_ipv4_addresses') or []) +
            list(task_vars.get('ansible_all_ipv6_addresses') or []))
        inputs = facts.get('inputs') or {}
        voice = facts.get('voice') or {}
        # The path of the TwiML's <Stream url> wins over doctor_ws_path: it is where Twilio really connects.
        stream = voice.get('stream') or {}
        twiml_path = voice['paths']['ws'] if stream.get('from_twiml') else None
        return external.collect(url, source, healthz_path=args.get('healthz_path') or inputs.get('healthz_path') or '/healthz',
                                ws_path=twiml_path or args.get('ws_path') or (voice.get('paths') or {}).get('ws')
                                or '/ws/twilio-media', target=target,
                                ws_elsewhere=stream.get('url') if stream.get('elsewhere') else None, **options)

    def _external_options(self, url, source):
        """The external probe's options from the task's arguments, each checked: a bad one ends the task with one
        line naming the variable. -> dict(validate_certs, ca_bundle, timeout)."""
        args = self._args
        try:
            validate_certs = boolean(args.get('validate_certs', True), strict=True)
        except TypeError:
            raise AnsibleActionFail('doctor_validate_certs=%r is not a boolean: set it to true or false'
                                    % (args.get('validate_certs'),))
        try:
            timeout = float(args.get('external_timeout') or external.DEFAULT_TIMEOUT)
        except (TypeError, ValueError):
            raise AnsibleActionFail('external_timeout=%r is not a number of seconds' % (args.get('external_timeout'),))
        ca_bundle = args.get('ca_bundle') or None
        if ca_bundle:
            ca_bundle = os.path.abspath(os.path.expanduser(ca_bundle))
            if not os.path.isfile(ca_bundle):
                raise AnsibleActionFail('doctor_ca_bundle=%r is not a file on the controller: set it to the PEM file '
                                        'of the CA that signed the public certificate, or leave it empty'
                                        % args.get('ca_bundle'))
        if source == 'doctor_public_base_url':
            try:
                external.split_base_url(url)
            except external.UrlError as e:
                # redact: the refused query may hold a token (?token=...)
                raise AnsibleActionFail(redact('doctor_public_base_url=%r %s: set it to the public https URL of the '
                                               'service, e.g. https://voice.example.com' % (external.without_userinfo(url), e)))
        return {'validate_certs': validate_certs, 'ca_bundle': ca_bundle, 'timeout': timeout}
