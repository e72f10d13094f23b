# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stabilize's look at the service inside the diagnosis' own call on the host (the probe module's `stabilize`
option), read-only: service_apply state=found's answer, and - when the plan will be the sync pass alone - that pass
in check mode. The stabilize_plan action decides again from the real diagnosis and takes the found service instead
of asking the host once more; it takes the checked pass only when its own plan sends the very same options
(plan.use_preview). A second run on a service stabilize already runs then reaches the host once: no second module
payload to build, no pass to run, about ten tasks skipped."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import (
    clean_up, module_args, plan as stabilize, service_pass)


def provisional_before(facts):
    """What the plan reads of a diagnosis, from the facts before the controller judges them: the port (the judges
    report the port probe's). No causes and no front door: a plan that differs for them is not the one the
    controller makes, and the controller then does not use the checked pass."""
    return {'port': (facts.get('port') or {}).get('port'), 'causes': [], 'verdict': None, 'front_door': None}


def service_apply_params(args):
    """`args` with service_apply's defaults and types, as the module would see them; None when they do not pass."""
    validated = ArgumentSpecValidator(module_args.SERVICE_APPLY).validate(args)
    return None if validated.error_messages else validated.validated_parameters


def look(psutil, run_command, systemctl, facts, request, warn):
    """-> {service: found's answer, pass: {args, result} when checked} ({} when the service cannot be found: the
    controller then asks the host itself and says why). request: the stabilize role's inputs and values."""
    inputs, values = request.get('inputs') or {}, request.get('values') or {}
    before = provisional_before(facts)
    try:
        found = clean_up.found(psutil, stabilize.found_args(inputs, values, before), run_command, systemctl, warn)
    except service_pass.PassError:
        return {}
    # It leaves the host with the facts, redacted like them (the master's settings may hold a secret's value): the
    # controller plans from that, so the plan here does too; the pass is checked against the service as found.
    service = redact(found)
    plan = stabilize.decide(inputs, before, service, {}, values)
    if not stabilize.only_the_pass(plan):
        return {'service': service}
    args = stabilize.preview_args(plan)
    params = service_apply_params(args)
    if params is None:
        return {'service': service}
    try:
        result = service_pass.apply(psutil, dict(params, service=found), run_command, check_mode=True)
    except service_pass.PassError:
        return {'service': service}
    # Like service_apply's result: it may quote the service's logs and command lines.
    return {'service': service, 'pass': {'args': args, 'result': redact(dict(result, warnings=[]))}}
