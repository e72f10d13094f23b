# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stabilize's plan, on the controller: each step takes the plan and the results of the tasks that ran and
returns the next plan (module_utils/stabilize/plan.py decides). Steps that reach the host: `decide` finds the service
(service_info's answer, with what the clean-up would find to do: from the diagnosis' own call, the probe's `stabilize`
preview, else from service_apply state=found; not when an unfixable cause stops the run first), reads the earlier
run's eventlet record, and records the plan's only pass as made when that call checked it changes nothing;
`failed` undoes this run's last service pass (service_apply state=rolled_back) when the plan says so, and asks
verify once whether a service restarted on its old files answers again. `check`, before anything is read, refuses a
name or value that would inject into the runner's files (the check service_apply makes again on the host), then
looks for the log file."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import json
import time

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.report_files import (
    ReportPathError, plain, write_stabilize_record)
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import plan as stabilize, runner_files

STEPS = ('check', 'decide', 'changes', 'environment', 'pins', 'pass', 'eventlet_failed', 'failed', 'rollback_failed', 'summary')


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('step', 'plan', 'inputs', 'before', 'preview', 'memory_file', 'strays', 'logs',
                             'port_fixed', 'hub_fixed', 'pins', 'installed', 'removed', 'purpose', 'service_result',
                             'window', 'verified', 'failed_result', 'failed_task', 'after', 'rollback',
                             'rolled_back', 'healthz_path', 'app', 'values', 'report_dir'))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = plain(self._task.args)
        step = args.get('step')
        if step not in STEPS:
            raise AnsibleActionFail('step must be one of %s, not %r' % (', '.join(STEPS), step))
        if step == 'check':
            # The run's archive name, taken once: the probe's preview and the plan both name it (vars/main.yml).
            result.update(changed=False, log_file=self._check(args.get('values') or {}),
                          stamp=time.strftime('%Y%m%dT%H%M%SZ', time.gmtime()))
            return result
        if step != 'decide' and not isinstance(args.get('plan'), dict):
            raise AnsibleActionFail('plan must be the plan an earlier stabilize_plan step returned')
        if step == 'decide':
            plan = self._decide(args, task_vars or {})
            if plan.get('failed'):
                result.update(plan)
                return result
        else:
            plan = self._step(step, args, args['plan'], task_vars or {})
        result.update(changed=False, plan=plan)
        return result

    def _check(self, values):
        """Before anything is read: a name or value that would inject into the runner's files is refused in one line.
        -> the log file for the diagnosis, '' when it does not exist yet (it has nothing to tell) - a `test -e` on the
        host, not a module: a module costs its payload built on the controller, a second of a short run."""
        problems = runner_files.problems(values)
        if problems:
            raise AnsibleActionFail('; '.join(problems))
        log_file = values.get('log_file') or ''
        return log_file if log_file and self._remote_file_exists(log_file) else ''

    def _step(self, step, args, plan, task_vars):
        if step == 'changes':
            return stabilize.record_changes(plan, args.get('strays') or {}, args.get('logs') or {},
                                            bool(args.get('port_fixed')), args.get('hub_fixed') or [])
        if step == 'environment':
            return stabilize.record_environment(plan, bool(args.get('port_fixed')), args.get('hub_fixed') or [])
        if step == 'pins':
            return stabilize.record_pins(plan, args.get('pins') or {}, bool(args.get('installed')),
                                         bool(args.get('removed')))
        if step == 'pass':
            return stabilize.record_pass(plan, args.get('purpose') or 'sync', args.get('service_result') or {},
                                         self._play_context.check_mode, args.get('window') or 0, args.get('verified'))
        if step == 'eventlet_failed':
            return stabilize.eventlet_failed(plan, args.get('failed_result'), args.get('failed_task'))
        if step == 'failed':
            plan = stabilize.record_failure(plan, args.get('failed_result'), args.get('failed_task'))
            return self._roll_back(plan, args, task_vars)
        if step == 'rollback_failed':
            return stabilize.record_rollback_failure(plan, args.get('failed_result'), args.get('failed_task'))
        host = task_vars.get('inventory_hostname')
        plan = stabilize.summarize(plan, host, self._play_context.check_mode,
                                   after_report=args.get('after'), verified=args.get('verified'),
                                   rollback=args.get('rollback') or plan.get('rollback'),
                                   rolled_back=args.get('rolled_back') or plan.get('rolled_back'),
                                   healthz_path=args.get('healthz_path') or '/healthz')
        return self._write_report(plan, host, args.get('report_dir'))

    @staticmethod
    def _write_report(plan, host, report_dir):
        """HOST.stabilize.json, like the diagnosis report: redacted, atomic, mode 0640, on the controller (also in
        check mode); -> the plan with `said`, what the run says last (the failure first when it fails)."""
        try:
            path, record = write_stabilize_record(report_dir or './doctor-reports', host, plan['record'])
        except ReportPathError as e:
            raise AnsibleActionFail(str(e))
        except (IOError, OSError) as e:
            raise AnsibleActionFail('doctor_report_dir=%s cannot be written: %s' % (report_dir, to_native(e)))
        # Shown on the console: redacted like the report (verify's evidence, the strays' command lines).
        said = [plan['fail'] or plan['lines'][0]] + plan['lines'][1:] + ['report: %s' % path]
        return dict(plan, record=record, lines=redact(plan['lines']), said=redact(said), report_path=path)

    def _roll_back(self, plan, args, task_vars):
        """No worse than it was found: undo this run's last service pass, then give back the second runners this
        run disabled (stabilize.runners_to_restore)."""
        if not plan.get('roll_back'):
            return plan
        plan = self._undo_pass(plan, args, task_vars)
        entries, loops = stabilize.runners_to_restore(plan, args.get('strays'))
        if not (entries or loops):
            return plan
        restored = {}
        if entries:
            restored = self._execute_module('sre.gunicorn_doctor.stop_strays', task_vars=task_vars, module_args={
                'app': args.get('app'), 'chdir': plan['inputs']['chdir'], 'restore': entries})
            if restored.get('failed'):
                return stabilize.record_rollback_failure(plan, restored, 'Give back the second runners it disabled')
        rollback = dict(plan.get('rollback') or {}, enabled=restored.get('restored') or [], not_restarted=loops)
        return dict(plan, rollback=rollback)

    def _undo_pass(self, plan, args, task_vars):
        """This run's last service pass undone; a service restarted on its old files is asked once (window 0)
        whether it answers on the port it had."""
        undo = (args.get('service_result') or {}).get('undo') or {}
        if not undo or undo.get('run') != plan['inputs'].get('stamp'):
            return plan
        rollback = self._execute_module('sre.gunicorn_doctor.service_apply', task_vars=task_vars,
                                        module_args={'state': 'rolled_back', 'undo': undo})
        if rollback.get('failed'):
            return stabilize.record_rollback_failure(plan, rollback, 'Roll the service back to how it was found')
        rollback = dict((k, rollback.get(k)) for k in ('done', 'restored', 'removed', 'state', 'pid'))
        rolled_back = {}
        if rollback['done'] and rollback['state'] == 'restarted':
            rolled_back = self._execute_module('sre.gunicorn_doctor.verify', task_vars=task_vars, module_args={
                'app': args.get('app'), 'chdir': plan['inputs']['chdir'], 'port': plan['before'].get('port'),
                'healthz_path': args.get('healthz_path') or '/healthz', 'window': 0, 'timeout': 10})
            rolled_back = dict((k, v) for k, v in rolled_back.items() if not k.startswith('_') and k != 'invocation')
        return dict(plan, rollback=rollback, rolled_back=rolled_back)

    def _decide(self, args, task_vars):
        inputs = dict(args.get('inputs') or {})
        inputs['stamp'] = inputs.get('stamp') or time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
        before, values = args.get('before') or {}, args.get('values') or {}
        plan = stabilize.decide(inputs, before)
        if plan['unfixable']:
            return plan
        # service_info's answer, with what the clean-up would find to do: the diagnosis' own call found it (the
        # probe's `stabilize` preview), else service_apply state=found (its payload the pass builds anyway).
        preview = args.get('preview') or {}
        service = preview.get('service')
        if not service:
            service = self._execute_module('sre.gunicorn_doctor.service_apply', task_vars=task_vars,
                                           module_args=stabilize.found_args(inputs, values, before))
            if service.get('failed'):
                return {'failed': True, 'msg': service.get('msg', 'service_apply state=found failed')}
            service = dict((k, v) for k, v in service.items()
                           if not k.startswith('_') and k not in ('invocation', 'changed'))
        memory = {}
        if stabilize.wanted_class(inputs.get('worker_class'), service) == 'eventlet' and args.get('memory_file'):
            memory = self._read_memory(args['memory_file'], task_vars)
        plan = stabilize.decide(inputs, before, service, memory, values)
        if preview.get('pass') and not self._play_context.check_mode:
            plan = stabilize.use_preview(plan, preview['pass'], args.get('window') or 0)
        return plan

    def _read_memory(self, path, task_vars):
        """What an earlier run learned about eventlet ({} when there is no record or it does not parse)."""
        found = self._execute_module('ansible.builtin.slurp', module_args={'src': path}, task_vars=task_vars)
        if found.get('failed') or not found.get('content'):
            return {}
        try:
            memory = json.loads(to_native(base64.b64decode(found['content'])))
        except (ValueError, TypeError):
            return {}
        return memory if isinstance(memory, dict) else {}
