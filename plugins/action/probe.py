# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The probe module, run as it is - or, given `stabilize` (the stabilize role's first diagnosis, not in check mode),
as stabilize_probe: the same probes and, in the same call, stabilize's look at the service. Two modules so that a
diagnosis, on one host or a fleet, does not build and ship stabilize's code (a payload a quarter larger)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.module import ARGUMENT_SPEC
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.role_vars import options_from_vars


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = dict(self._task.args)
        prefix = args.pop('vars_prefix', None)
        if prefix:
            args = options_from_vars(args, ARGUMENT_SPEC, prefix, task_vars or {}, self._templar)
        request = args.pop('stabilize', None)
        if request and not self._play_context.check_mode:
            name, args = 'sre.gunicorn_doctor.stabilize_probe', dict(args, stabilize=request)
        else:
            name = 'sre.gunicorn_doctor.probe'
        result = merge_hash(result, self._execute_module(module_name=name, module_args=args, task_vars=task_vars))
        # As ansible.builtin.normal does: the temporary directory a run without pipelining made on the host.
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
