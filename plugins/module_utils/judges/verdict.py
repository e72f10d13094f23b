# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts -> layer statuses, causes and the verdict: runs the layer judges (one module per layer, in
ladder order) and ranks what they found. The only place that decides what a fact means is a judge.

Pure: no I/O, no Ansible. `judge(facts, host)` returns the contract's report; `judge_layer` serves
the single-layer modules."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain.causes import LAYERS, SYMPTOMS
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import (
    boot, eventlet, external, healthz, listen, port, process, system, voice)
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges.shared import (
    RANK, Layer, front_door_report, healthz_stable, host_values, primary_master, settings_report)

JUDGES = (
    ('port', port.judge), ('process', process.judge), ('listen', listen.judge), ('healthz', healthz.judge),
    ('boot', boot.judge), ('system', system.judge), ('eventlet', eventlet.judge),
    ('voice', voice.judge), ('external', external.judge),
)


def _judge_one(facts, name, func, layer):
    late = (facts.get('ran_out_of_time') or {}).get(name)
    if late:   # the probe's deadline passed before this layer's facts were in: say so, judge nothing half-seen
        layer.check('probe finished', 'warn', late)
    elif name in facts or name in ('eventlet', 'voice', 'external'):  # later layers say why they skip
        func(facts, layer)


def judge_layer(facts, name):
    """One layer's result and causes (for the single-layer modules)."""
    layer = Layer(name, host_values(facts))
    _judge_one(facts, name, dict(JUDGES)[name], layer)
    return layer.result(), layer.causes


def rank_key(causes):
    """Ladder order, the worse first within a layer; a symptom (causes.SYMPTOMS) goes right after the deepest layer
    that has a failing root cause, so the report starts with what explains it."""
    roots = [LAYERS.index(c['layer']) for c in causes if c['severity'] == 'fail' and c['id'] not in SYMPTOMS]

    def key(c):
        at = LAYERS.index(c['layer'])
        if c['id'] in SYMPTOMS and roots and max(roots) > at:
            at = max(roots) + 0.5
        return at, -RANK[c['severity']]
    return key


def judge(facts, host):
    """The whole report of one host (see the contract and report.schema.json)."""
    values = host_values(facts)
    layers, causes = [], []
    for name, func in JUDGES:
        layer = Layer(name, values)
        _judge_one(facts, name, func, layer)
        layers.append(layer.result())
        causes.extend(layer.causes)
    causes.sort(key=rank_key(causes))
    failed = next((l['name'] for l in layers if l['status'] == 'fail'), None)
    if not healthz_stable(facts):
        verdict = 'down'
    elif causes:
        verdict = 'degraded'
    else:
        verdict = 'healthy'
    return {
        'host': host,
        'verdict': verdict,
        'failed_layer': failed,
        'causes': causes,
        'layers': layers,
        'port': facts['port']['port'],
        'port_source': facts['port']['source'],
        'timings': facts.get('timings', {}),
        'restart_history': process.restart_history(facts),
        # The primary master's effective settings, each with its source (docs/contract.md); null when none runs.
        'settings': settings_report(primary_master(facts)) if 'process' in facts else None,
        'front_door': front_door_report(facts),
        'log_file': (facts.get('log') or {}).get('path'),
        'log_file_source': (facts.get('log') or {}).get('source'),
    }
