# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every probe module shares: its argument spec and running the probes inside AnsibleModule.

No verdict here: the probe module ships without the judges (a smaller payload to build, send and
compile on every host); the single-layer modules pass their judge in (run_layer_module), so probes/
never imports judges/."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

from ansible.module_utils.basic import AnsibleModule, remove_values

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.zip_compile import compile_once

# Before the probes are imported from the module's zip: each compiled once, not twice (see zip_compile).
compile_once()

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.host import InputError, probe_host
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.psutil_dep import require_psutil
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact, url_secrets


ARGUMENT_SPEC = dict(
    app=dict(type='str', required=True),
    chdir=dict(type='path', required=True),
    python=dict(type='str', default='python3'),
    port=dict(type='str'),
    env_file=dict(type='path'),
    log_file=dict(type='path'),
    healthz_path=dict(type='str', default='/healthz'),
    boot_timeout=dict(type='int', default=30),
    stability_window=dict(type='int', default=15),
    preload_boot=dict(type='str', default='auto', choices=['auto', 'always', 'never']),
    dry_import=dict(type='bool', default=True),
    worker_class=dict(type='str', default='auto', choices=['auto', 'sync', 'eventlet', 'gthread', 'gevent']),
    voice_checks=dict(type='bool', default=True),
    voice_pace=dict(type='raw', default=1.0),  # host_probe.validate says what a pace is, in one line
    public_base_url=dict(type='str'),
    incoming_call_path=dict(type='str', default='/incoming_call'),
    stream_status_path=dict(type='str', default='/stream_status'),
    ws_path=dict(type='str', default='/ws/twilio-media'),
    twilio_auth_token=dict(type='str', no_log=True),
    gcp_credentials_env=dict(type='str'),
    systemd_unit_dir=dict(type='path'),
)


def new_module(extra_spec=None):
    """The module with the shared options (plus `extra_spec`, a module's own)."""
    module = AnsibleModule(argument_spec=dict(ARGUMENT_SPEC, **(extra_spec or {})), supports_check_mode=True)
    # The URL stays readable in the -vvv invocation; its password and token do not.
    module.no_log_values.update(url_secrets(module.params['public_base_url']))
    return module


def collect_facts(module, layers=None):
    """Run the probes; bad input or a missing psutil ends the module with a one-line message. The facts
    are redacted here, where they are collected: nothing the host holds leaves it unredacted."""
    psutil = require_psutil(module)
    try:
        return redact(probe_host(psutil, module.params, layers))
    except InputError as e:
        module.fail_json(msg=redact(str(e)))   # may quote the app's import error


def facts_as_json(module, facts):
    """The facts as one JSON string (the probe's facts_format=json). exit_json hides the no_log values in what it
    returns; in a string it would miss one that JSON escapes, so they are hidden in the facts first."""
    return json.dumps(remove_values(facts, module.no_log_values))


def exit_with_facts(module, facts, **extra):
    """End the probe module (and stabilize_probe) with the facts, as `facts_format` asks: a dict or one JSON string."""
    if module.params['facts_format'] == 'json':
        module.exit_json(changed=False, facts_json=facts_as_json(module, facts), **extra)
    module.exit_json(changed=False, facts=facts, **extra)


def run_layer_module(layer, fact_keys, judge_layer):
    """main() of a single-layer module: that layer's facts (probed here), its checks and its causes, judged on
    the host by `judge_layer` (judges.verdict.judge_layer, passed in by the module)."""
    module = new_module()
    facts = collect_facts(module, [layer])
    result, causes = judge_layer(facts, layer)
    module.exit_json(changed=False, facts=dict((key, facts.get(key)) for key in fact_keys),
                     status=result['status'], checks=result['checks'], causes=causes)
