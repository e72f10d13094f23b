# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""main() of the single-layer modules: one layer's facts judged on the host (the verdict travels with them)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.module import collect_facts, new_module
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges.verdict import judge_layer


def run_layer_module(layer, fact_keys):
    """main() of a single-layer module: facts of that layer, its checks and its causes."""
    module = new_module()
    facts = collect_facts(module, [layer])
    result, causes = judge_layer(facts, layer)
    module.exit_json(changed=False, facts=dict((k, facts.get(k)) for k in fact_keys),
                     status=result['status'], checks=result['checks'], causes=causes)
