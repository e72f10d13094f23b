# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The listen layer: who listens on $PORT (facts['listen'])."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.net import is_loopback
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn_settings
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import shared


def _prefer_masters(sockets):
    """Workers inherit the master's listening socket: name the master once, not each worker."""
    masters = set((s['address'], s['port']) for s in sockets if s['app_role'] == 'master')
    return [s for s in sockets if s['app_role'] == 'master' or (s['address'], s['port']) not in masters]


def _bind_source(facts):
    """Where the primary master's bind comes from, as evidence."""
    master = shared.primary_master(facts)
    if not master:
        return []
    return ['master %d binds %s, from %s' % (master['pid'], ','.join(master['settings']['bind'] or []) or '?',
                                              shared.source_of(master, 'bind'))]


def judge(facts, layer):
    port = facts['port']['port']
    listen = facts['listen']
    mine = _prefer_masters([s for s in listen['on_port'] if s['app_role']])
    others = [s for s in listen['on_port'] if not s['app_role']]
    elsewhere = _prefer_masters([s for s in listen['app_sockets'] if s['port'] != port])
    if mine:
        where = ', '.join('%s:%d by %s %s' % (s['address'], s['port'], s['app_role'], s['pid']) for s in mine)
        if all(is_loopback(s['address']) for s in mine):
            layer.check('listening on $PORT', 'fail', 'loopback only: ' + where)
            layer.cause('bind_loopback_only', ['only %s: the platform and proxies cannot reach it' % where] +
                        _bind_source(facts), bound=gunicorn_settings.socket_bind((mine[0]['address'], port)))
        else:
            layer.check('listening on $PORT', 'pass', where)
        return
    holders = ['port %d is held by pid %s (%s) on %s, not by the app' % (port, s['pid'], s['name'], s['address'])
               for s in others]
    app_elsewhere = [s for s in elsewhere if s['app_role'] == 'master'] or elsewhere
    if app_elsewhere:
        where = ', '.join('%s %s listens on %s:%d' % (s['app_role'], s['pid'], s['address'], s['port'])
                          for s in app_elsewhere)
        layer.check('listening on $PORT', 'fail', 'nothing of the app listens on %d; %s' % (port, where))
        s = app_elsewhere[0]
        layer.cause('wrong_port', ['nothing of the app listens on %d (PORT from %s); %s' % (
            port, facts['port']['source'], where)] + _bind_source(facts) + holders,
            bound=gunicorn_settings.socket_bind((s['address'], s['port'])))
        return
    evidence = ['nothing of the app listens on %d (PORT from %s)' % (port, facts['port']['source'])] + holders
    masters = shared.masters_of(facts)
    evidence += ['%s, but it listens nowhere' % shared.describe_master(m) for m in masters] or \
        ['no gunicorn master of %s runs' % facts['inputs']['app']]
    tail = [e['line'] for e in shared.last_run_events(facts)
            if e['event'] in ('worker_failed_boot', 'app_failed_load', 'master_shutdown', 'signal_term')][-3:]
    evidence += tail
    layer.check('listening on $PORT', 'fail', evidence[0])
    layer.cause('not_listening', evidence)
