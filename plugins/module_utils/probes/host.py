# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the target-side probes of one host in one call: facts only, no verdict.

Order: the process table and the log first (cheap, and everything else needs them), then the
port; then listen, healthz, the dry import, the static scan and the system layer concurrently.
The spare-port preload boot runs only when /healthz is not a 200 (evidence decides what to pay for).
The dry import and the preload boot run the app's code: confined by app_runner (as the service's user, with the
service's environment only); doctor_dry_import=false and doctor_preload_boot=never turn them off.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import shutil
import threading
import time

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import app_runner
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import deadline_http, safe_read
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import (
    gunicorn, gunicorn_settings, restart_history, service_env)
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.processes import own_lineage
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import (
    boot, cpu_load, cpu_quota, eventlet as eventlet_probe, healthz, listen, logfile, port as port_probe, process, restart_runner, system, window)

APP_SPEC = re.compile(r'^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*(\(\))?)?$')
DEFAULTS = {
    'python': 'python3', 'port': None, 'env_file': None, 'log_file': None, 'healthz_path': '/healthz',
    'boot_timeout': 30, 'stability_window': 15, 'preload_boot': 'auto', 'dry_import': True, 'worker_class': 'auto',
    'voice_checks': True, 'voice_pace': 1.0, 'public_base_url': None, 'incoming_call_path': '/incoming_call',
    'stream_status_path': '/stream_status', 'ws_path': '/ws/twilio-media', 'twilio_auth_token': None,
    'gcp_credentials_env': None, 'systemd_unit_dir': None,
}
PACE_MAX = 20
# The probe's own bounds: its long waits are the stability window and two boot timeouts (the dry import, then a
# spare-port boot); this covers the bounded rest (each /healthz sample 3 s, the simulated call with its webhooks,
# version reads, stopping what it started). roles/diagnose/vars/main.yml computes the task's timeout the same way.
PROBE_SLACK = 60
# The spare-port boot's own start (the interpreter, gunicorn) before the app's import begins: added to the service's
# --timeout to bound the boot (the dry import times the import itself, see boot.run_dry_import).
BOOT_STARTUP = 3.0
CONFIG_MAX = 256 << 10   # a gunicorn config file read for its timeout
TARGET_LAYERS = ('port', 'process', 'listen', 'healthz', 'boot', 'system', 'eventlet', 'voice')


class InputError(Exception):
    """Bad input: the message names the variable and says what to fix."""


def validate(params):
    """Check the user's inputs before probing anything; raise InputError with a one-line fix."""
    p = dict(DEFAULTS, **dict((k, v) for k, v in params.items() if v is not None))
    if not p.get('app') or not APP_SPEC.match(p['app']):
        raise InputError("doctor_app=%r is not a WSGI target: set it to MODULE:VARIABLE, e.g. "
                         "AgentLocator.main:app" % (p.get('app'),))
    if not p.get('chdir') or not os.path.isdir(p['chdir']):
        raise InputError('doctor_chdir=%r is not a directory on this host: set it to the directory '
                         'gunicorn runs the app from' % (p.get('chdir'),))
    p['chdir'] = os.path.abspath(p['chdir'])
    python = shutil.which(p['python']) if not os.path.isabs(p['python']) else p['python']
    if not python or not os.path.isfile(python) or not os.access(python, os.X_OK):
        raise InputError("doctor_python=%r is not an executable interpreter on this host: set it to the "
                         "app's venv python, e.g. %s/.venv/bin/python" % (p['python'], p['chdir']))
    p['python'] = python
    if p['port'] not in (None, ''):
        if port_probe.valid_port(p['port']) is None:
            raise InputError('doctor_port=%r is not a port: set it to a whole number from 1 to 65535, or '
                             'leave it unset to read PORT from the service environment' % (p['port'],))
        p['port'] = port_probe.valid_port(p['port'])
    unreadable = safe_read.refusal(p['env_file'], follow=True) if p['env_file'] else None
    if unreadable:
        raise InputError('doctor_env_file=%r %s: set it to the env file the service reads, or leave it unset'
                         % (p['env_file'], unreadable))
    try:
        pace = None if isinstance(p['voice_pace'], bool) else float(p['voice_pace'])
    except (TypeError, ValueError):
        pace = None
    # Slower than real time would hold a sync worker past its --timeout; past 20x the frames go out in a burst.
    if pace is None or not 1 <= pace <= PACE_MAX:
        raise InputError('doctor_voice_pace=%r is not a pace: set it to a number from 1 (real time: a media frame every '
                         '20 ms, as Twilio sends) to %d, e.g. 4 (every 5 ms)' % (p['voice_pace'], PACE_MAX))
    p['voice_pace'] = pace
    for name in ('healthz_path', 'incoming_call_path', 'stream_status_path', 'ws_path'):
        if not str(p[name]).startswith('/'):
            raise InputError('doctor_%s=%r must start with "/", e.g. %s' % (name, p[name], DEFAULTS[name]))
    return p


def service_environment(masters, env_file_env, runners=()):
    """The environment the app really runs with: the running master's; else what its runner (the first systemd
    unit or supervisord program that runs it, see app_runner.find_runners) and the env file give it. Never the
    prober's own: that is Ansible's (SSH_AUTH_SOCK, SUDO_*, ANSIBLE_*), not the service's."""
    for master in masters:
        env = service_env.read_proc_environ(master['pid'])
        if env:
            return env
    env = dict(runners[0]['env']) if runners else {}
    env.update(env_file_env or {})
    return env


def wait_decision(masters, window, underway=None):
    """How long to watch /healthz: until the youngest gunicorn process of the app is `window` s old; the whole window
    when the log shows a restart `underway` (restart_history.restart_underway: the service is half-restarted)."""
    ages = [(m['age'], 'master %d' % m['pid']) for m in masters]
    ages += [(w['age'], 'worker %d' % w['pid']) for m in masters for w in m['workers']]
    if not ages:
        return 0, 'no gunicorn process of the app runs'
    age, who = min(ages)
    if age >= window and underway:
        return window, '%s: watching the restart for up to %d s' % (underway, window)
    if age >= window:
        return 0, 'youngest process (%s) is %.0f s old' % (who, age)
    return window - age, '%s is only %.1f s old: watching until it is %d s old' % (who, age, window)


def service_timeout(masters, env, chdir):
    """The service's effective worker --timeout -> (seconds, where it comes from), or (None, why) when it is not known
    or 0 (no timeout). The running master's settings; with no master, what gunicorn would start with in `chdir` with
    the service's environment (GUNICORN_CMD_ARGS, ./gunicorn.conf.py, gunicorn's default)."""
    for m in masters:
        source = (m.get('settings_sources') or {}).get('timeout') or 'its command line or gunicorn\'s default'
        return _usable_timeout(m['settings'].get('timeout'), 'master %d: %s' % (m['pid'], source))
    found = gunicorn_settings.effective(['gunicorn'], env, chdir, _read_config)
    source = found['sources'].get('timeout')
    return _usable_timeout(found['settings'].get('timeout'), 'no master runs: %s' % (
        "gunicorn's default" if source == gunicorn_settings.DEFAULT else source))


def _usable_timeout(value, source):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None, '%s sets no usable timeout (%r)' % (source, value)
    return value, source


def _read_config(path):
    done = safe_read.read_text(path, CONFIG_MAX, follow=True)
    if done.data is None:
        raise OSError(done.error)
    return done.data


def _timed(timings, name, func, *args, **kwargs):
    started = time.time()
    try:
        return func(*args, **kwargs)
    finally:
        timings[name] = round(time.time() - started, 3)


class Task(object):
    """A probe in a daemon thread: one stuck past the probe's deadline is left behind, and cannot keep the
    module from returning what the others found (a pool's threads are joined at exit)."""

    def __init__(self, func, *args, **kwargs):
        self.value = self.error = None
        self.done = threading.Event()
        thread = threading.Thread(target=self._run, args=(func,) + args, kwargs=kwargs, name='probe')
        thread.daemon = True
        thread.start()

    def _run(self, func, *args, **kwargs):
        try:
            self.value = func(*args, **kwargs)
        except BaseException as e:  # raised again in the caller's thread, as a future would
            self.error = e
        finally:
            self.done.set()

    def result(self, deadline, name, late):
        """The probe's facts; None, noted in `late` under `name`, when the deadline passes first."""
        if not self.done.wait(max(deadline.remaining(), 0)):
            late[name] = '%s: this probe had not finished, its facts are missing' % deadline.why
            return None
        if self.error is not None:
            raise self.error
        return self.value


# What each expensive probe is needed for (the single-layer modules ask for one layer).
NEEDED_BY = {
    'listen': ('listen', 'healthz', 'boot'),
    'healthz': ('healthz', 'boot', 'eventlet', 'voice'),
    'boot': ('boot', 'eventlet'),
    'system': ('system',),
    'eventlet': ('eventlet',),
    'voice': ('voice',),
}
# The eventlet environments (and the hub crash they show), read in _first_facts: by the eventlet layer, by the
# stability window (the healthz probe: a hub every eventlet master fails on ends it) and by the boot layer (the
# spare-port boots skipped on it); a probe of none of these layers (port_info, process_info, ...) skips them.
NEEDED_BY['eventlet_env'] = tuple(sorted(set(NEEDED_BY['eventlet'] + NEEDED_BY['healthz'] + NEEDED_BY['boot'])))


def time_budget(p):
    """Seconds the whole probe may take (see PROBE_SLACK)."""
    return p['stability_window'] + 2 * p['boot_timeout'] + PROBE_SLACK


def probe_host(psutil, params, layers=None):
    """-> facts for the target-side layers (all by default). Raises InputError on bad input.

    Within time_budget(): a probe still running then is left out, and `ran_out_of_time` says which layer missed
    what (the report shows it) instead of the whole task being killed by its timeout with nothing to show."""
    p = validate(params)
    wanted = set(layers or TARGET_LAYERS)
    started = time.time()
    deadline = deadline_http.Deadline(time_budget(p), why='the probe ran out of time (its budget: the stability '
                                      'window + 2 x the boot timeout + %d s = %d s)' % (PROBE_SLACK, time_budget(p)))
    timings, late = {}, {}
    facts, context = _first_facts(psutil, p, timings, wanted)
    context['deadline'] = deadline
    procs, port = context['process'], context['port']

    def start(probe, timing, func, *args, **kwargs):
        return Task(_timed, timings, timing, func, *args, **kwargs) if wanted.intersection(NEEDED_BY[probe]) else None

    def wait(task, layer):
        return task.result(deadline, layer, late) if task is not None else None

    t_listen = start('listen', 'listen', listen.collect, psutil, port, procs, facts['log'])
    dry_stop = threading.Event()   # set when a worker of the service already proves the boot slow

    def start_dry():
        return start('boot', 'dry_import', dry_import, p, context, dry_stop) if p['dry_import'] else None
    deferred = settled_service(p, context)   # its window may prove the dry import needless (dry_import_skip)
    t_dry = None if deferred else start_dry()
    t_scan = start('boot', 'static_scan', boot.scan_dev_server_calls, p['chdir'], p['app'])
    log_dir = os.path.dirname(os.path.abspath(p['log_file'])) if p['log_file'] else None
    t_system = start('system', 'system', system.collect, psutil, [p['chdir'], log_dir],
                     [m['pid'] for m in procs['masters']], context['table'])
    # Before /healthz: an app behind a front door on $PORT is sampled over its unix socket or loopback port too.
    facts['listen'] = with_answer_elsewhere(p, context, wait(t_listen, 'listen'), deadline)
    context['cpu_before'] = _cpu_quota_before(p, wanted, procs)
    watch = new_window(context, deadline, listen.backend(facts['listen']), bound_elsewhere(context, facts['listen']))
    t_healthz = start('healthz', 'healthz', watch.run)
    if deferred and not (serves_elsewhere(facts) or first_answer_ok(watch, t_healthz, deadline)):
        t_dry, deferred = start_dry(), False   # no 200 at once: the dry import is evidence, start it now
    facts['healthz'] = wait(t_healthz, 'healthz')
    if slow_boots(facts['healthz']):
        dry_stop.set()   # the running worker proves more than the dry import could within the timeout
    if facts['healthz']:   # the lines the log gained during the window count for the judges too
        facts['log'] = _timed(timings, 'log_again', reread_log, p['log_file'], facts['log'], facts['healthz']['watch'])
    stable = window_stable(facts['healthz'])
    context.update(healthz=facts['healthz'], stable=stable, log=facts['log'])
    # The simulated call is the longest probe: start it as soon as /healthz has been sampled.
    t_voice = start('voice', 'voice', collect_voice, context) if p['voice_checks'] else None
    dry_skipped = dry_import_skip(p, context, facts) if deferred else None
    t_dry = t_dry if dry_skipped or not deferred else start_dry()
    facts['system'] = wait(t_system, 'system')
    dry = wait(t_dry, 'boot')
    if dry is not None:
        _check_app_spec(p, dry)
    context = dict(context, dry_import=dry)
    boot_wanted = wanted.intersection(NEEDED_BY['boot']) and 'boot' not in late
    skipped = _preload_skip_reason(p, stable, dry) or (p['preload_boot'] == 'auto' and (
        _slow_boot_skip_reason(facts['healthz']) or _boot_proven(facts, dry) or _hub_crash_skip(context, dry)))
    t_preload = None
    if boot_wanted and not skipped:
        t_preload = start('boot', 'preload_boot', boot.preload_boot, p['python'], p['chdir'], p['app'],
                          p['healthz_path'], context['env'], context['boot_limit'],
                          (dry or {}).get('versions', {}).get('gunicorn'), psutil, ident=context['identity'])
    t_eventlet = start('eventlet', 'eventlet', eventlet_probe.collect, context)
    if boot_wanted:
        preload, scan = wait(t_preload, 'boot'), wait(t_scan, 'boot')
        if 'boot' not in late:
            facts['boot'] = {'dry_import': dry, 'dry_import_skipped': dry_skipped, 'preload_boot': preload,
                             'preload_skipped': skipped,
                             # The user's switches: what the judge reports as turned off, not as passed or failed.
                             'dry_import_off': not p['dry_import'], 'preload_off': p['preload_boot'] == 'never',
                             'run_as': app_runner.describe(context['identity']), 'dev_server_calls': scan}
    facts['eventlet'], facts['voice'] = wait(t_eventlet, 'eventlet'), wait(t_voice, 'voice')
    for name in [k for k, v in facts.items() if v is None and k in TARGET_LAYERS]:
        del facts[name]
    if late:
        facts['ran_out_of_time'] = late
    timings['total'] = round(time.time() - started, 3)
    facts['timings'] = timings
    return facts


def _cpu_quota_before(p, wanted, procs):
    """The app's CPU quota use as the window starts, counted again when the call starts (voice.bounds_scale)."""
    masters = (procs or {}).get('masters') or []
    if p['voice_checks'] and 'voice' in wanted and masters:
        return cpu_quota.sample(masters[0]['pid'])
    return None


def collect_voice(context):
    """The voice layer (probes/voice.py), imported only when it runs: with doctor_voice_checks off no host compiles it
    and its Twilio and WebSocket code (AnsiballZ compiles the collection's code on every run)."""
    from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import voice
    return voice.collect(context)


def new_window(context, deadline, backend=None, settled=None):
    """The stability window (probes/window.py; run() -> the healthz facts): /healthz sampled while the app's processes
    and log are watched. `backend`: the unix socket or loopback port of an app behind a front door on $PORT, sampled there too;
    `settled`: why a failure at the first sample is final (bound_elsewhere)."""
    p, started = context['params'], time.time()
    sampler = healthz.Sampler(context['port'], p['healthz_path'], context['wait'], context['wait_reason'],
                              healthz.TIMEOUT, deadline, backend, settled, load=cpu_load.scale)
    processes = window.ProcessWatch(context['psutil'], p['app'], p['chdir'], context['exclude'],
                                    context['process']['masters'], started, context.get('table') or ())
    log = window.LogWatch(p['log_file'], (context['log'] or {}).get('size'), started, (context['log'] or {}).get('events') or ())
    history = restart_history.unsettled(context['log'], context['process']['masters'], time.time(), p['stability_window'])
    return window.Window(sampler, processes, log, history, context['service_timeout'][0], context.get('hub_crash'))


def slow_boots(h):
    """The workers the window saw booting for longer than the service's worker timeout (probes/heartbeat.py)."""
    return ((h or {}).get('watch') or {}).get('slow_boots') or []


def _slow_boot_skip_reason(h):
    """Why the spare-port boot has nothing to add to a boot already proven slow, or None."""
    found = slow_boots(h)
    if not found:
        return None
    return 'worker %d of the service has been booting for %.0f s, longer than its worker timeout: a spare-port boot ' \
        'would too' % (found[0]['pid'], found[0]['seconds'])


def watch_window(context, deadline, backend=None, settled=None):
    """The stability window run to its end (see new_window) -> the healthz facts."""
    return new_window(context, deadline, backend, settled).run()


def first_answer_ok(watch, task, deadline):
    """Whether /healthz's first answer in the window `watch` (run by `task`) was a 200: awaited, not the whole window."""
    if task is None:
        return False
    while not watch.sampler.first.wait(0.05):
        if task.done.is_set() or deadline.remaining() <= 0:
            return False
    return bool(watch.sampler.first_ok)


def dry_import(p, context, stop):
    """The dry import (probes/boot.py), stopped at the service's own --timeout when that is shorter than the
    boot timeout, or as soon as `stop` is set."""
    timeout, source = context['service_timeout']
    return boot.run_dry_import(p['python'], p['chdir'], p['app'], p['healthz_path'], context['env'], p['boot_timeout'],
                               context['psutil'], ident=context['identity'], stop=stop,
                               import_limit=(timeout, source) if timeout and timeout < p['boot_timeout'] else None)


# Log events that say the current run's workers had trouble booting or running: the dry import's evidence is wanted.
BOOT_TROUBLE = ('worker_timeout', 'worker_sigkill', 'worker_failed_boot', 'app_failed_load', 'worker_exception')


def settled_service(p, context):
    """Whether the dry import may wait for the window's evidence (dry_import_skip): the app's masters and workers all
    run and are older than the window, their log is read, and none runs (or is meant for) eventlet, whose layer reads
    the traced import."""
    masters = context['process']['masters']
    if not p['dry_import'] or not masters or context['wait'] or not context['log'] or p['worker_class'] == 'eventlet':
        return False
    return not any('eventlet' in str(m['settings'].get('worker_class') or '') for m in masters)


def dry_import_skip(p, context, facts):
    """Why the dry import of a settled service has nothing to add, or None (it runs): /healthz answered a stable 200
    and no process of the app changed during the window, the log shows no worker in trouble since the oldest master
    started, and no source file of the app changed since its oldest worker booted - the running workers imported
    the very code on disk and serve it."""
    masters, elsewhere = context['process']['masters'], serves_elsewhere(facts)
    if elsewhere:
        return elsewhere
    if not context['stable'] or (facts['healthz'] or {}).get('watch', {}).get('changes'):
        return None
    since = min(m['create_time'] for m in masters) - 1   # the log's times have whole seconds
    trouble = [e for e in (facts['log'] or {}).get('events') or []
               if e['event'] in BOOT_TROUBLE and (e.get('epoch') is None or e['epoch'] >= since)]
    if trouble:
        return None
    booted = min([m['create_time'] for m in masters] + [w['create_time'] for m in masters for w in m['workers']])
    try:
        newer = [f for f in boot.app_source_files(p['chdir'], p['app']) if os.stat(f).st_mtime > booted]
    except OSError:   # a file gone meanwhile: the code is changing, import it
        return None
    if newer:
        return None
    return ('a settled service: /healthz answered a stable 200 from workers that imported the code on disk (no source '
            'file of %s changed since they booted) and the log shows no worker in trouble since master %d started'
            % (p['app'].split(':')[0], min(masters, key=lambda m: m['create_time'])['pid']))


def bound_elsewhere(context, listen_facts):
    """Why nothing will answer on $PORT soon, or None: every process of the app is older than the window, nothing
    listens on $PORT, and the app listens on other TCP ports (a settled service bound elsewhere; re-sampling to tell
    down from flapping would only cost seconds)."""
    ports = _gunicorn_ports(listen_facts)
    if not context['process']['masters'] or context['wait'] or not ports:
        return None
    return 'nothing listens on $PORT=%s while the app, older than the window, listens on %s' % (context['port'], ports)


def with_answer_elsewhere(p, context, listen_facts, deadline):
    """The listen facts, with `answers_elsewhere` when the app is bound elsewhere (bound_elsewhere) and its master's
    port answers the health path with a 200 on loopback: the app boots and serves, only not on $PORT. That one GET
    proves what the dry import and the spare-port boot would (a second or more of CPU each), and is the wrong_port
    cause's evidence."""
    if not listen_facts or not bound_elsewhere(context, listen_facts):
        return listen_facts
    ports = sorted(set(s['port'] for s in listen_facts['app_sockets']
                       if s['app_role'] == 'master' and s['address'] in ('0.0.0.0', '127.0.0.1')))
    if ports:
        sample = healthz.sample(ports[0], p['healthz_path'], healthz.TIMEOUT * cpu_load.scale()[0], within=deadline)
        if sample['status'] == 200:
            listen_facts['answers_elsewhere'] = dict(sample, url='http://127.0.0.1:%d%s' % (ports[0], p['healthz_path']))
    return listen_facts


def serves_elsewhere(facts):
    """Why the app's boot needs no dry import and no spare-port boot (with_answer_elsewhere), or None."""
    answer = (facts.get('listen') or {}).get('answers_elsewhere')
    if not answer:
        return None
    return "the app's gunicorn answers GET %s with a 200: it boots and serves the health path, only not on $PORT" % (
        answer['url'])


def _gunicorn_ports(listen_facts):
    """'8001, 8002': the TCP ports the app's gunicorn listens on when nothing at all listens on $PORT, else ''."""
    if not listen_facts or listen_facts['on_port']:
        return ''
    return ', '.join(sorted(set(str(s['port']) for s in listen_facts['app_sockets']
                                if s['app_role'] == 'master' or s['app_role'].startswith('worker'))))


def window_stable(h):
    """Every sample a 200 and no master gone without a replacement (None: not sampled): what decides whether the
    spare-port boots are worth their seconds."""
    if not h:
        return None
    masters = [c['what'] for c in h['watch']['changes'] if c['role'] == 'master']
    return all(s['status'] == 200 for s in h['samples']) and masters.count('exited') <= masters.count('started')


def reread_log(path, log, watch):
    """The log read again at the window's end when it grew during it (the first read's facts otherwise)."""
    if not path or not log or not watch['log_bytes_read']:
        return log
    try:
        return dict(log, **logfile.collect(path))
    except logfile.LogFileError:  # gone or replaced by something unreadable meanwhile: keep what was read
        return log


def _hub_crash_skip(context, dry):
    """Why the sync spare-port boot has nothing to add to a crash loop on an invalid EVENTLET_HUB, or None: the
    dry import already serves the health path, and the eventlet layer names the hub every master fails on."""
    if not context.get('hub_crash') or not (dry or {}).get('ok') or dry.get('healthz_status') != 200:
        return None
    return 'the dry import serves the health path, and every eventlet master of the app fails on its hub (%s)' % (
        context['hub_crash'])


def _preload_skip_reason(p, stable, dry):
    """Why the spare-port boot is not run (None: it runs): evidence decides what to pay for."""
    if p['preload_boot'] == 'never':
        return 'doctor_preload_boot=never'
    if p['preload_boot'] == 'always':
        return None
    if stable:
        return '/healthz answered a stable 200'
    if (dry or {}).get('over_limit'):
        return 'the dry import already ran past the worker timeout: a spare-port boot would too'
    return None


def _boot_proven(facts, dry):
    """Why the spare-port boot has nothing to add, or None: the app's own gunicorn answered 200 on $PORT during the
    window (it boots; what failed later is the process and healthz layers'), or the dry import serves the health path
    and the app's gunicorn listens, only not on $PORT (the listen layer's wrong_port explains the failures)."""
    elsewhere = serves_elsewhere(facts)
    if elsewhere:
        return elsewhere
    listen_facts, samples = facts['listen'] or {}, (facts['healthz'] or {}).get('samples') or []
    on_port = listen_facts.get('on_port')
    if on_port and all(s['app_role'] for s in on_port) and any(s['status'] == 200 for s in samples):
        return "the app's gunicorn answered 200 on $PORT during the window: it boots"
    ports = _gunicorn_ports(listen_facts)
    if not ports or not (dry or {}).get('ok') or dry.get('healthz_status') != 200:
        return None
    return 'the dry import serves the health path and the app listens, only not on $PORT (port %s)' % ports


@service_env.units_read_once()   # four of the probes below look for the app's systemd units: read the files once
def _first_facts(psutil, p, timings, wanted):
    """The cheap facts everything else needs (the log, the process table, the port, the service environment)
    -> (facts, context shared by the later probes). `wanted`: the layers probed (the eventlet environments are read
    only for those that use them, NEEDED_BY['eventlet_env'])."""
    env_file_env = service_env.parse_dotenv(service_env.read_text(p['env_file']) or '') if p['env_file'] else None
    exclude = own_lineage(psutil)
    runners = app_runner.find_runners(p['app'], p['chdir'])
    given_log = p['log_file']
    # One pass over /proc, shared by the process and restart probes below, the system layer and the window.
    table = _timed(timings, 'process_table', process.scan, psutil)
    procs = _timed(timings, 'process', process.collect, psutil, p['app'], p['chdir'], exclude,
                   runners=runners, env_file_env=env_file_env, table=table)
    log = _timed(timings, 'log', _collect_log, p, procs['masters'])
    # Nothing sets PORT: the front door on the app's unix socket, or the last master in the log, says which port.
    port = _timed(timings, 'port', port_probe.collect, p['port'], env_file_env, p['env_file'], procs['masters'],
                  p['app'], p['chdir'], inferred=lambda: port_probe.inferred_candidates(psutil, procs, log))
    procs['restarters'] = _timed(timings, 'restarters', restart_runner.collect, psutil, p['app'], p['chdir'],
                                 procs['masters'], port['port'], p['healthz_path'], unit_dir=p['systemd_unit_dir'],
                                 table=table)
    env = service_environment(procs['masters'], env_file_env, runners)
    ident = app_runner.service_identity(psutil, procs['masters'], runners, p['chdir'])
    underway = restart_history.restart_underway((log or {}).get('generations') or [],
                                                set(m['pid'] for m in procs['masters']), time.time())
    wait, reason = wait_decision(procs['masters'], p['stability_window'], underway)
    timeout = service_timeout(procs['masters'], env, p['chdir'])
    facts = {
        'inputs': {'app': p['app'], 'chdir': p['chdir'], 'python': p['python'], 'env_file': p['env_file'],
                   'log_file': given_log, 'healthz_path': p['healthz_path'],
                   'stability_window': p['stability_window'], 'worker_class': p['worker_class'],
                   'voice_checks': p['voice_checks'], 'voice_pace': p['voice_pace']},
        'port': port,
        'process': procs,
        'log': log,
        'env_names': sorted(env),  # names only: values may be secrets
        'env_file_names': sorted(env_file_env) if env_file_env is not None else None,
    }
    # What the later layers share: the inputs, the service's environment and what was seen so far.
    context = {'params': p, 'psutil': psutil, 'env': env, 'env_file_env': env_file_env, 'process': procs,
               'port': port['port'], 'log': log, 'healthz': None, 'stable': None, 'dry_import': None,
               'wait': wait, 'wait_reason': reason, 'identity': ident, 'exclude': exclude,
               'service_timeout': timeout, 'table': table,
               # The spare-port boots may take the service's own --timeout (plus their start), never more.
               'boot_limit': min(p['boot_timeout'], timeout[0] + BOOT_STARTUP) if timeout[0] else p['boot_timeout']}
    # Read once for the eventlet layer, before the window: a hub every eventlet master fails on ends it at once.
    # Not read (None) when no wanted layer uses them.
    context['eventlet_envs'] = context['hub_crash'] = None
    if set(wanted).intersection(NEEDED_BY['eventlet_env']):
        context['eventlet_envs'] = _timed(timings, 'eventlet_env', eventlet_probe.read_environments, context)
        context['hub_crash'] = eventlet_probe.hub_crash(procs['masters'], context['eventlet_envs'])
    return facts, context


def effective_error_log(masters):
    """The error log the running masters write to, from their effective settings (--error-logfile, errorlog in the
    config file, GUNICORN_CMD_ARGS) -> (path, why); (None, why) when it is stderr or unknown."""
    for m in masters:
        path = m['settings'].get('error_logfile')
        source = (m.get('settings_sources') or {}).get('error_logfile', 'default')
        if path and path != '-':
            base = m['settings'].get('chdir') or m.get('cwd') or '/'
            return os.path.join(base, path), 'errorlog of master %d (%s)' % (m['pid'], source)
        if 'error_logfile' in (m.get('settings_computed') or {}):
            return None, 'master %d computes its errorlog in its config file' % m['pid']
        return None, 'master %d logs to stderr (errorlog "-", %s)' % (m['pid'], source)
    return None, 'no master runs'


def _collect_log(p, masters):
    """The log the user named (doctor_log_file: unreadable is an input error), else the one the master's effective
    errorlog names (unreadable is a note). p['log_file'] is set to it, for the later probes."""
    if p['log_file']:
        try:
            log = logfile.collect(p['log_file'])
        except logfile.LogFileError as e:
            raise InputError("doctor_log_file=%r %s: set it to gunicorn's --error-logfile, or leave it unset"
                             % (p['log_file'], e))
        return dict(log, source='doctor_log_file')
    path, why = effective_error_log(masters)
    if path is None:
        return None
    try:
        log = logfile.collect(path)
    except logfile.LogFileError:
        return None
    p['log_file'] = path
    return dict(log, source=why)


def _check_app_spec(p, dry):
    """A doctor_app that names no module or no variable is an input error, not an app fault."""
    error = dry.get('error') or {}
    module, variable = gunicorn.split_app_spec(p['app'])
    missing = error.get('module_not_found')
    if error.get('type') in ('ModuleNotFoundError', 'ImportError') and missing and \
            (module == missing or module.startswith(missing + '.')):
        raise InputError("doctor_app=%r: no module %r in doctor_chdir=%s or on doctor_python's path: set it to "
                         "MODULE:VARIABLE of the app, e.g. AgentLocator.main:app" % (p['app'], missing, p['chdir']))
    if error.get('stage') == 'lookup':
        raise InputError('doctor_app=%r: %s: set the part after ":" to the name of the Flask app object'
                         % (p['app'], error.get('message')))
