# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""port layer: which port the platform expects, and where that value came from."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn, service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import front_door, listen

DEFAULT_PORT = 8000


def valid_port(value):
    """'8123' -> 8123; anything that is not a whole number from 1 to 65535 -> None."""
    text = str(value).strip() if value is not None else ''
    if not text.isdigit():
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def port_candidates(doctor_port, env_file_env, env_file, masters, app, chdir=None):
    """Every place that says which port the service gets, most authoritative first.

    doctor_port wins; then what the running master was actually started with; then what its
    runner will give it next start (env file, systemd unit, supervisord program).
    """
    found = []
    if doctor_port not in (None, ''):
        found.append({'source': 'doctor_port', 'value': str(doctor_port)})
    for master in masters:
        env = service_env.read_proc_environ(master['pid'])
        if env is not None and 'PORT' in env:
            found.append({'source': '/proc/%d/environ (running master)' % master['pid'], 'value': env['PORT']})
    if env_file_env is not None and 'PORT' in env_file_env:
        found.append({'source': env_file, 'value': env_file_env['PORT']})
    for path, env in service_env.find_unit_environments(app, chdir=chdir):
        if 'PORT' in env:
            found.append({'source': path, 'value': env['PORT']})
    for where, env in service_env.find_supervisord_environments(app, chdir=chdir):
        if 'PORT' in env:
            found.append({'source': where, 'value': env['PORT']})
    return found


def _log_port(log):
    """The TCP bind of the last master generation of the log (`Listening at: http://0.0.0.0:8123 (PID)`)
    -> (port, bind, generation) or (None, None, None)."""
    for gen in reversed((log or {}).get('generations') or []):
        url = gen.get('listening') or ''
        if '://' in url and not url.startswith('unix:'):
            bind = url.split('://', 1)[1]
            try:
                port = gunicorn.parse_bind(bind)['port']
            except ValueError:
                continue
            if port:
                return port, bind, gen
    return None, None, None


def _door_candidates(psutil, process_facts, log):
    """Proxies whose configuration forwards to the app's unix socket, on each TCP port they listen on."""
    paths = listen.expected_unix_paths(process_facts, log)
    if not paths:
        return []
    app_pids = set(listen.app_roles(process_facts))
    found, seen = [], {}
    for sock in listen.listening_sockets(psutil):
        if not sock['pid'] or sock['pid'] in app_pids:
            continue
        if sock['pid'] not in seen:
            seen[sock['pid']] = front_door.find(psutil, sock['port'], [sock])
        door = seen[sock['pid']]
        served = [path for path in door['unix_upstreams'] if path in paths]
        if served:
            found.append({'source': 'front door %s (pid %s) listening on %s:%d, forwarding to unix:%s (%s)' % (
                door['name'] or 'a proxy', door['pid'], sock['address'], sock['port'], served[0], door['config']),
                'value': str(sock['port']), 'inferred': True})
    return found


def inferred_candidates(psutil, process_facts, log):
    """When nothing sets PORT, the port the evidence shows (each candidate `inferred`): the front door that forwards
    to the app's unix socket, else (no master runs) the TCP port the last master in the log listened on."""
    found = _door_candidates(psutil, process_facts, log)
    port, bind, gen = _log_port(log) if not process_facts['masters'] else (None, None, None)
    if port:
        found.append({'source': 'the last master in the log %s (pid %s, listening on %s)' % (
            log['path'], gen['pid'], bind), 'value': str(port), 'inferred': True})
    return found


def collect(doctor_port, env_file_env, env_file, masters, app, chdir=None, inferred=None):
    """-> facts: the port to probe, its source, every candidate, and whether it was valid. `inferred`: called when
    no source sets PORT, -> inferred_candidates (the explicit sources always come first)."""
    candidates = port_candidates(doctor_port, env_file_env, env_file, masters, app, chdir)
    if not candidates and inferred is not None:
        candidates = inferred()
    if not candidates:
        return {'port': DEFAULT_PORT, 'source': 'default', 'raw': None, 'valid': True,
                'candidates': [], 'disagree': False}
    chosen = candidates[0]
    port = valid_port(chosen['value'])
    values = set(c['value'].strip() for c in candidates)
    return {
        # An invalid value still needs a port for the other layers: the runbook says 8000.
        'port': port if port is not None else DEFAULT_PORT,
        'source': chosen['source'],
        'inferred': bool(chosen.get('inferred')),
        'raw': chosen['value'],
        'valid': port is not None,
        'candidates': candidates,
        'disagree': len(values) > 1,
    }
