# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""port layer: which port the platform expects, and where that value came from."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import service_env

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


def collect(doctor_port, env_file_env, env_file, masters, app, chdir=None):
    """-> facts: the port to probe, its source, every candidate, and whether it was valid."""
    candidates = port_candidates(doctor_port, env_file_env, env_file, masters, app, chdir)
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
        'raw': chosen['value'],
        'valid': port is not None,
        'candidates': candidates,
        'disagree': len(values) > 1,
    }
