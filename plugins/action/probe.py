# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The probe module, run as it is - or, given `stabilize` (the stabilize role's first diagnosis, not in check mode),
as stabilize_probe: the same probes and, in the same call, stabilize's look at the service. Two modules so that a
diagnosis, on one host or a fleet, does not build and ship stabilize's code (a payload a quarter larger).

Given `report` (audit.yml), the probe's result is judged and written right here by the report action, in the same
task: across a fleet, each task per host costs the controller's main process a round of variables, a worker fork
and a result, and that process is what a large audit waits for."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.module import ARGUMENT_SPEC
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.role_vars import options_from_vars


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = dict(self._task.args)
        prefix, report = args.pop('vars_prefix', None), args.pop('report', None)
        if report is not None and not isinstance(report, dict):
            raise AnsibleActionFail('report must be the options of sre.gunicorn_doctor.report (a dict), e.g. '
                                    '{vars_prefix: doctor_}')
        if prefix:
            args = options_from_vars(args, ARGUMENT_SPEC, prefix, task_vars or {}, self._templar)
        request = args.pop('stabilize', None)
        if request and not self._play_context.check_mode:
            name, args = 'sre.gunicorn_doctor.stabilize_probe', dict(args, stabilize=request)
        else:
            name = 'sre.gunicorn_doctor.probe'
        try:
            result = merge_hash(result, self._execute_module(module_name=name, module_args=args, task_vars=task_vars))
        except AnsibleConnectionFailure as e:
            if report is None:
                raise
            # The host's report says it could not be reached (the report action writes it), as the audit wants.
            return self._report(report, {'unreachable': True, 'msg': to_text(e)}, task_vars)
        # As ansible.builtin.normal does: the temporary directory a run without pipelining made on the host.
        self._remove_tmp_path(self._connection._shell.tmpdir)
        if report is None or result.get('failed'):
            return result
        return self._report(report, result, task_vars)

    def _report(self, options, probed, task_vars):
        """The report action's result for the probe's result `probed`, run in this worker (its options: `options`)."""
        task = self._task.copy(exclude_parent=True, exclude_tasks=True)
        task.args = dict(options, probe=probed)
        action = self._shared_loader_obj.action_loader.get(
            'sre.gunicorn_doctor.report', task=task, connection=self._connection, play_context=self._play_context,
            loader=self._loader, templar=self._templar, shared_loader_obj=self._shared_loader_obj)
        return action.run(task_vars=task_vars)
