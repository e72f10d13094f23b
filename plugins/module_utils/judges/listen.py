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
    binds = ','.join(master['settings']['bind'] or []) or '?'
    return ['master %d binds %s, from %s' % (master['pid'], binds, shared.source_of(master, 'bind'))]


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
    if shared.unix_shape(facts):
        judge_unix(facts, layer)
        return
    if listen.get('tcp_backend'):
        judge_tcp(facts, layer)
        return
    holders = ['port %d is held by pid %s (%s) on %s, not by the app' % (port, s['pid'], s['name'], s['address'])
               for s in others]
    app_elsewhere = [s for s in elsewhere if s['app_role'] == 'master'] or elsewhere
    if app_elsewhere:
        where = ', '.join('%s %s listens on %s:%d' % (s['app_role'], s['pid'], s['address'], s['port'])
                          for s in app_elsewhere)
        layer.check('listening on $PORT', 'fail', 'nothing of the app listens on %d; %s' % (port, where))
        s = app_elsewhere[0]
        answer = listen.get('answers_elsewhere')
        served = ['GET %s -> 200 in %.0f ms: the app serves, only not on $PORT' % (answer['url'], answer['latency_ms'])] \
            if answer else []
        layer.cause('wrong_port', ['nothing of the app listens on %d (PORT from %s); %s' % (
            port, facts['port']['source'], where)] + served + _bind_source(facts) + holders,
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


def _socket_state(p):
    """One unix socket of the app, in words a person can check with `ss -lxp` and `ls -l`."""
    said = ' (bound there per %s)' % ', '.join(p['sources'])
    if p['app']:
        return 'unix:%s accepts: %s' % (p['path'], ', '.join('%s %d' % (a['app_role'], a['pid']) for a in p['app']))
    if p['accepting']:
        return 'unix:%s accepts, but no process of the app holds it%s' % (p['path'], said)
    if p['file'] == 'socket':
        return 'unix:%s is a stale socket file: nothing accepts on it (gunicorn was killed or is gone)%s' % (
            p['path'], said)
    if p['file'] == 'missing':
        return 'unix:%s does not exist: nothing is bound to it%s' % (p['path'], said)
    return 'unix:%s is %s, not a socket%s' % (p['path'], p['file'], said)


def _answers(facts):
    """What /healthz answered through the front door and over the socket, when it was sampled."""
    h = facts.get('healthz') or {}
    lines = []
    if h.get('samples'):
        first = h['samples'][0]
        lines.append('GET %s -> %s' % (h['url'], first['status'] or first['error']))
    for s in (h.get('backend') or {}).get('samples', [])[:1]:
        lines.append('GET %s -> %s' % (h['backend']['url'], s['status'] or s['error']))
    return lines


def judge_unix(facts, layer):
    """An app bound to a unix socket: it listens when one of its processes accepts on the socket; $PORT belongs
    to the front door (a reverse proxy) that forwards to it."""
    port = facts['port']['port']
    door = shared.front_door(facts)
    paths = shared.unix_shape(facts)
    accepting = [p for p in paths if p['app']]
    states = [_socket_state(p) for p in (accepting or paths)]
    if accepting and door:
        layer.check('listening on $PORT', 'pass', 'the front door %s holds $PORT; %s' % (
            shared.describe_door(door), '; '.join(states)))
        if _check_door_config(facts, door, accepting, layer):
            _check_door_answers(facts, door, accepting[0]['path'], layer)
        return
    if accepting:
        layer.check('listening on $PORT', 'fail', 'nothing listens on %d; %s' % (port, '; '.join(states)))
        layer.cause('front_door_down', ['nothing listens on %d (PORT from %s)' % (port, facts['port']['source'])]
                    + states, socket=accepting[0]['path'])
        return
    masters = shared.masters_of(facts)
    evidence = states + _answers(facts)
    evidence += ['%s, but it accepts on none of them' % shared.describe_master(m) for m in masters] or \
        ['no gunicorn master of %s runs' % facts['inputs']['app']]
    evidence += [e['line'] for e in shared.last_run_events(facts)
                 if e['event'] in ('worker_failed_boot', 'app_failed_load', 'master_shutdown', 'signal_term')][-3:]
    layer.check('listening on $PORT', 'fail', 'nothing of the app accepts on its socket: %s' % states[0])
    if door is None:
        layer.cause('not_listening', ['nothing listens on %d (PORT from %s)' % (port, facts['port']['source'])] + evidence)
        return
    layer.cause('proxy_backend_down', ['the front door %s answers for the app, but the app behind it is down' % (
        shared.describe_door(door))] + evidence, proxy=shared.describe_door(door), **dict(
            backend_values(facts, paths[0]['path']), extra='Nothing of the app accepts on unix:%s, so the front door has '
            'no backend (it answers 502).' % paths[0]['path']))


def _upstream(backend):
    """How a proxy's config names the backend: a unix socket path, or a loopback port (an int)."""
    return '127.0.0.1:%d' % backend if isinstance(backend, int) else 'unix:%s' % backend


def backend_values(facts, backend):
    """The proxy_backend_down remedy's values for the app's unix socket (a path) or loopback port (an int)."""
    path = facts['inputs']['healthz_path']
    if isinstance(backend, int):
        return {'socket': None, 'backend_kind': 'port', 'backend': _upstream(backend), 'backend_note': '',
                'backend_check': 'curl http://127.0.0.1:%d%s' % (backend, path)}
    return {'socket': backend, 'backend_kind': 'socket', 'backend': _upstream(backend),
            'backend_note': ' (gunicorn replaces a stale socket file itself)',
            'backend_check': 'curl --unix-socket %s http://localhost%s' % (backend, path)}


def judge_tcp(facts, layer):
    """An app on a loopback port behind a front door that holds $PORT and whose config forwards to that port
    (nginx `proxy_pass http://127.0.0.1:8000`): it listens when a process of the app listens there."""
    door = shared.front_door(facts)
    backend = facts['listen']['tcp_backend']
    target = _upstream(backend['port'])
    if backend['app']:
        layer.check('listening on $PORT', 'pass', 'the front door %s holds $PORT and its config %s forwards to %s, '
                    'where the app listens: %s' % (shared.describe_door(door), door['config'], target, ', '.join(
                        '%s %d' % (a['app_role'], a['pid']) for a in backend['app'])))
        _check_door_answers(facts, door, backend['port'], layer)
        return
    evidence = ['nothing of the app listens on %s (bound there per %s)' % (target, ', '.join(backend['sources']))]
    evidence += _answers(facts)
    evidence += ['%s, but it listens nowhere' % shared.describe_master(m) for m in shared.masters_of(facts)] or \
        ['no gunicorn master of %s runs' % facts['inputs']['app']]
    evidence += [e['line'] for e in shared.last_run_events(facts)
                 if e['event'] in ('worker_failed_boot', 'app_failed_load', 'master_shutdown', 'signal_term')][-3:]
    layer.check('listening on $PORT', 'fail', evidence[0])
    layer.cause('proxy_backend_down', ['the front door %s answers for the app, but the app behind it is down' % (
        shared.describe_door(door))] + evidence, proxy=shared.describe_door(door), **dict(
            backend_values(facts, backend['port']), extra='Nothing of the app listens on %s, so the front door has no '
            'backend (it answers 502).' % target))


def _check_door_answers(facts, door, path, layer):
    """The socket answers /healthz but the front door does not: the proxy does not reach the app."""
    h = facts.get('healthz') or {}
    back = (h.get('backend') or {}).get('samples') or []
    bad = [s for s in h.get('samples') or [] if s['status'] != 200]
    if not back or not bad or any(s['status'] != 200 for s in back):
        return
    layer.cause('proxy_backend_down', [
        'GET %s through the front door %s -> %s body %r' % (
            h['url'], shared.describe_door(door), bad[0]['status'] or bad[0]['error'], bad[0]['body'][:120]),
        'GET %s -> 200' % h['backend']['url']], proxy=shared.describe_door(door), **dict(
            backend_values(facts, path), extra='The app answers on its %s but the front door does not reach it: check '
            'its upstream (proxy_pass / server %s) and its error log.' % (
                'port' if isinstance(path, int) else 'socket', _upstream(path))))


def _check_door_config(facts, door, accepting, layer):
    """Whether the front door's config forwards to the socket the app accepts on (a note when unreadable).
    -> False when it forwards elsewhere (then that is the cause)."""
    if not door.get('config'):
        layer.check('front door forwards to the socket', 'pass', 'note: %s has no config file we know of: '
                    'the sampling through it tells' % door['name'])
        return True
    elif door.get('config_error') or not door.get('config_files'):
        layer.check('front door forwards to the socket', 'pass', 'note: its config could not be read (%s): the '
                    'sampling through it tells' % (door.get('config_error') or door['config']))
        return True
    elif shared.door_serves_app(facts):
        layer.check('front door forwards to the socket', 'pass', '%s (%d file%s read) forwards to unix:%s' % (
            door['config'], door['config_files'], '' if door['config_files'] == 1 else 's', accepting[0]['path']))
        return True
    else:
        detail = '%s names %s, not the app\'s socket unix:%s' % (
            door['config'], ', '.join('unix:' + p for p in door['unix_upstreams']) or 'no unix socket',
            accepting[0]['path'])
        layer.check('front door forwards to the socket', 'fail', detail)
        layer.cause('proxy_backend_down', [detail] + _answers(facts), proxy=shared.describe_door(door),
                    **dict(backend_values(facts, accepting[0]['path']), extra='The front door forwards elsewhere: '
                           'point its upstream (proxy_pass / server) at unix:%s and reload it.' % accepting[0]['path']))
        return False
