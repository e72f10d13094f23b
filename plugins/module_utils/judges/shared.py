# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What several layer judges share: the Layer that collects checks and causes, and helpers on facts
(the masters, the current run's log events, the host values every remedy gets).

Pure: no I/O, no Ansible."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import shlex

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn, gunicorn_settings
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain.causes import CAUSES, render_remedy
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import window

RANK = {'skip': 0, 'pass': 1, 'warn': 2, 'fail': 3}


class Layer(object):
    """Checks and causes of one layer as they are found."""

    def __init__(self, name, values):
        self.name = name
        self.values = values
        self.checks = []
        self.causes = []

    def check(self, name, status, detail):
        self.checks.append({'name': name, 'status': status, 'detail': detail})

    def cause(self, cause_id, evidence, severity=None, refs=None, **extra):
        """Record a cause; `refs` overrides the table's twilio_error / runbook_cause / runbook_step
        when this instance's evidence says more than the usual case."""
        meta = CAUSES[cause_id]
        values = dict(self.values, **extra)
        self.causes.append({
            'id': cause_id,
            'layer': meta['layer'],
            'severity': severity or meta['severity'],
            'evidence': [e for e in evidence if e] or [meta['meaning']],
            'remedy': render_remedy(cause_id, values),
            'twilio_error': meta['twilio_error'],
            'runbook_step': meta['runbook_step'],
            'runbook_cause': meta['runbook_cause'],
        })
        self.causes[-1].update(refs or {})

    def result(self):
        # A passing note ("note: none known ...") is context: a layer whose real checks were all skipped is skipped.
        real = [c for c in self.checks if not (c['status'] == 'pass' and (c['detail'] or '').startswith('note:'))]
        statuses = [c['status'] for c in (real or self.checks)] + [c['severity'] for c in self.causes]
        status = max(statuses, key=RANK.get) if statuses else 'skip'
        return {'name': self.name, 'status': status, 'checks': self.checks}


def masters_of(facts):
    return facts['process']['masters']


def primary_master(facts):
    """The master serving $PORT if one does, else the oldest."""
    on_port = set(s['pid'] for s in (facts.get('listen') or {}).get('on_port', []))
    masters = masters_of(facts)
    for m in masters:
        if m['pid'] in on_port:
            return m
    return max(masters, key=lambda m: m['age']) if masters else None


def _run_start(events, master):
    """Where the current run begins in `events`: the primary master's `Listening at`, else the last `Starting`."""
    start = 0
    for i, e in enumerate(events):
        if e['event'] == 'listening' and master and int(e.get('master', 0)) == master['pid']:
            return i
        if e['event'] == 'starting':
            start = i
    return start


def last_run_events(facts):
    """Log events of the current run: after the primary master's `Listening at`, else after the last
    `Starting gunicorn` (so old incidents in a long log do not count against a healthy service)."""
    log = facts.get('log')
    if not log:
        return []
    return log['events'][_run_start(log['events'], primary_master(facts)):]


BOOT_FAILED = ('worker_failed_boot', 'app_failed_load', 'worker_exception')


def boot_failures(facts):
    """The boot-failure events of the current run; when it has none yet, no stable 200 was seen and its master is
    younger than the stability window (or none runs), those of the run before it: a crash loop's newest master has not
    failed yet (a new master that serves after a failed deploy is not blamed for it)."""
    log = facts.get('log')
    if not log:
        return []
    events, master = log['events'], primary_master(facts)
    start = _run_start(events, master)
    failed = [e for e in events[start:] if e['event'] in BOOT_FAILED]
    if failed or healthz_stable(facts) or (master and master['age'] >= facts['inputs'].get('stability_window', 15)):
        return failed
    starts = [i for i, e in enumerate(events[:start + 1]) if e['event'] == 'starting']
    if len(starts) < 2:
        return []
    return [e for e in events[starts[-2]:starts[-1]] if e['event'] in BOOT_FAILED]


def describe_master(m):
    s = m['settings']
    return 'master %d (%s, %s worker%s, timeout %s, bind %s%s), %s s old, started by %s: %s' % (
        m['pid'], s['worker_class'], s['workers'], '' if s['workers'] == 1 else 's', s['timeout'],
        ','.join(s['bind'] or []) or 'unknown', ', preload' if s['preload'] else '', age(m['age']),
        m['runner']['kind'], m['runner']['detail']) + (' (through the script %s)' % m['runner']['via'] if m['runner'].get('via') else '')


# The settings the verdict uses, in the order a report lists them.
REPORTED_SETTINGS = ('app', 'bind', 'workers', 'worker_class', 'threads', 'worker_connections', 'timeout',
                     'graceful_timeout', 'keepalive', 'preload', 'chdir', 'daemon', 'pidfile', 'error_logfile',
                     'access_logfile', 'loglevel', 'capture_output', 'user', 'group', 'raw_env')


def source_of(master, key):
    """Where a master's setting came from: 'command line', 'GUNICORN_CMD_ARGS', 'config file PATH:LINE',
    'listening sockets', 'default' (see probes/process.master_settings)."""
    return (master.get('settings_sources') or {}).get(key, gunicorn_settings.DEFAULT) if master else \
        gunicorn_settings.DEFAULT


def setting(master, key, fallback=None):
    """A master's effective setting; `fallback` when there is no master or the config file computes it."""
    value = master['settings'].get(key) if master else None
    return fallback if value is None else value


def front_door_report(facts):
    """The proxy that holds $PORT in front of the app, for the report (stabilize keeps the bind it forwards to):
    name, pid, address, port, config and backend (the app's 'unix:PATH' or '127.0.0.1:N'); None without one."""
    door = front_door(facts)
    if not door:
        return None
    return {'name': door.get('name'), 'pid': door.get('pid'), 'address': door.get('address'), 'port': door.get('port'),
            'config': door.get('config'), 'backend': backend_bind(facts)}


def settings_report(master):
    """The primary master's effective settings for the report: each {value, source} (+ computed: the config
    file's expression when only running the file could tell); raw_env shows names only."""
    if not master:
        return None
    values = {}
    computed = master.get('settings_computed') or {}
    for key in REPORTED_SETTINGS:
        value = master['settings'].get(key)
        if key == 'raw_env' and value:
            value = [item.split('=', 1)[0] + '=...' for item in value]
        values[key] = {'value': value, 'source': source_of(master, key)}
        if key in computed:
            values[key]['computed'] = computed[key]
    concurrency = gunicorn_settings.concurrency(master['settings'])
    return {'pid': master['pid'], 'config_file': master.get('config_file'),
            'read_from': list(master.get('settings_from') or []), 'problems': list(master.get('settings_problems') or []),
            'concurrency': {'calls': concurrency[0], 'detail': concurrency[1]}, 'values': values}


def describe_sources(master):
    """'bind 0.0.0.0:8000 (config file /srv/app/gunicorn.conf.py:3), timeout 60 (GUNICORN_CMD_ARGS), ...': the
    settings that do not come from gunicorn's defaults, each with its source."""
    parts = []
    computed = master.get('settings_computed') or {}
    for key in REPORTED_SETTINGS:
        source = source_of(master, key)
        if source == gunicorn_settings.DEFAULT or key == 'raw_env':
            continue
        value = master['settings'].get(key)
        shown = ','.join(value) if isinstance(value, list) else value
        if key in computed and value is None:
            shown = 'computed: %s' % computed[key]
        parts.append('%s %s (%s)' % (key, shown, source))
    return ', '.join(parts) or 'all gunicorn defaults'


def change(facts, key, config_value, cli_value):
    """Where to change a setting of the primary master, for a remedy (gunicorn_settings.where_to_change)."""
    master = primary_master(facts)
    old = setting(master, key)
    return gunicorn_settings.where_to_change(key, source_of(master, key), config_value, cli_value,
                                             runner=master['runner'] if master else None,
                                             env_file=facts['inputs'].get('env_file'),
                                             old=','.join(old) if isinstance(old, list) else old)


def age(seconds):
    return '%d' % seconds if seconds >= 10 else '%.1f' % seconds


def backend_bind(facts):
    """The bind the canonical command keeps behind a front door (the app's socket or loopback port), else None."""
    sockets, tcp = unix_shape(facts), tcp_backend(facts)
    if sockets:
        return 'unix:%s' % sockets[0]['path']
    return '127.0.0.1:%d' % tcp['port'] if tcp else None


def host_values(facts):
    """Host values for the remedy templates."""
    inputs = facts['inputs']
    port = facts['port']['port']
    master = primary_master(facts)
    command = gunicorn.format_command(
        shlex.quote(inputs['python']) if ' ' in inputs['python'] else inputs['python'], inputs['app'], '$PORT',
        worker_class=setting(master, 'worker_class', 'sync'), workers=setting(master, 'workers', 1),
        bind=backend_bind(facts))
    env_where = gunicorn_settings.where_env_is_set(master['runner'] if master else None, inputs.get('env_file'))
    return {
        'port': port,
        'source': facts['port']['source'],
        'raw': facts['port'].get('raw') or '',
        'env_where': env_where,
        'env_file': inputs.get('env_file'),
        'command': 'cd %s && PORT=%d %s' % (inputs['chdir'], port, command),
        'healthz_path': inputs['healthz_path'],
        # GUNICORN_CMD_ARGS and a socket unit's ListenStream= expand no $PORT: they get the number.
        'bind_change': change(facts, 'bind', '"0.0.0.0:" + os.environ["PORT"]',
                              '0.0.0.0:%d' % port if source_of(master, 'bind').startswith(
                                  (gunicorn_settings.ENV_ARGS, gunicorn_settings.SOCKET_ACTIVATION)) else '0.0.0.0:$PORT'),
        'timeout_change': change(facts, 'timeout', 'SECONDS', 'SECONDS'),
        'dry_import_command': 'cd %s && %s -c "import %s as m; a = m.%s; print(a.url_map); '
                              'print(a.test_client().get(\'%s\').status_code)"' % (
                                  inputs['chdir'], inputs['python'], gunicorn.split_app_spec(inputs['app'])[0],
                                  gunicorn.split_app_spec(inputs['app'])[1].rstrip('()'), inputs['healthz_path']),
    }


def unix_shape(facts):
    """The unix sockets of an app that does not itself listen on $PORT (facts['listen']['unix']): each
    dict(path, sources, file, accepting, app); [] for an app on a TCP port."""
    return (facts.get('listen') or {}).get('unix') or []


def tcp_backend(facts):
    """The loopback port behind a front door on $PORT where the app listens or should (facts['listen']
    ['tcp_backend']: address, port, app, sources), or None."""
    return (facts.get('listen') or {}).get('tcp_backend')


def backend_answers(facts):
    """Whether a process of the app accepts behind the front door (on its unix socket or loopback port)."""
    return any(p['app'] for p in unix_shape(facts)) or bool((tcp_backend(facts) or {}).get('app'))


def front_door(facts):
    """The process that holds $PORT in front of an app on a unix socket (facts['listen']['front_door']), or None."""
    return (facts.get('listen') or {}).get('front_door')


def describe_door(door):
    return '%s (pid %s) on %s:%d' % (door['name'] or 'a process', door['pid'], door['address'], door['port'])


def door_serves_app(facts):
    """Whether the front door forwards to the app's socket: its readable config names one of the app's sockets;
    True too when its config could not be read (then the sampling over the socket is the evidence)."""
    door = front_door(facts)
    if door is None:
        return False
    named = door.get('unix_upstreams') or []
    if door.get('config') and door.get('config_files') and not door.get('config_error'):
        return any(p['path'] in named for p in unix_shape(facts))
    return True


def answered_by_stranger(facts):
    """Listeners on $PORT, when none of them is the app nor its front door: their 200 is not the app's."""
    on_port = (facts.get('listen') or {}).get('on_port', [])
    if any(s['app_role'] for s in on_port) or (unix_shape(facts) and door_serves_app(facts)) or tcp_backend(facts):
        return []
    return on_port


def healthz_stable(facts):
    """Every sample a 200 from the app on $PORT (behind a front door: and over the app's own socket), and no master
    that served it exited during the window (a restart fast enough to keep /healthz green is still a restart)."""
    h = facts.get('healthz') or {}
    samples = h.get('samples')
    backend = (h.get('backend') or {}).get('samples')
    if h.get('backend') and not (backend and all(s['status'] == 200 for s in backend)):
        return False
    return bool(samples) and all(s['status'] == 200 for s in samples) and not answered_by_stranger(facts) and \
        not serving_master_exits(facts)


def serving_master_exits(facts):
    """The window's exits of masters that served the service (judges/window.master_exits)."""
    primary = primary_master(facts)
    return [m for m in window.master_exits(facts, primary['pid'] if primary else None) if m['serving']]
