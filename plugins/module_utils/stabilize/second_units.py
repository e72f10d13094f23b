# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A second systemd unit of the app beside the unit stabilize manages (runbook 3.3, two runners). Its master
cannot be stopped by PID (systemd would start it again, and the unit starts it at every boot), so the unit is
disabled: `systemctl disable --now UNIT` when its directory is this host's; `systemctl --root=ROOT disable UNIT`
when it is ROOT/etc/systemd/system of another root (an image, a test's tree), where nothing runs under systemd
and a running master of the app is a stray stopped by PID. Only a unit of the managed unit directory that
provably runs this app alone in this directory; one that also runs something else, or when there is no
systemctl, is named and stops stabilize before anything changes.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os
import shlex

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import processes, safe_read, service_user
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import restart_runner
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import service_control

ENABLED = ('enabled', 'enabled-runtime')
ACTIVE = ('active', 'activating', 'reloading')
# Commands a unit runs at start besides its ExecStart=: a unit with one runs more than the app.
OTHER_EXEC = ('ExecCondition', 'ExecStartPre', 'ExecStartPost')


def unit_root(unit_dir):
    """'/' when unit_dir is one this host's systemd reads, ROOT for ROOT/etc/systemd/system (another root), None
    for a directory no systemd reads."""
    real = os.path.realpath(unit_dir).rstrip('/')
    if real in restart_runner.STANDARD_UNIT_DIRS:
        return '/'
    # The longest first: ROOT/usr/lib/systemd/system is ROOT's, not ROOT/usr's.
    for standard in sorted(restart_runner.STANDARD_UNIT_DIRS, key=len, reverse=True):
        if real.endswith(standard):
            return real[:-len(standard)]
    return None


def _unit_text(path):
    paths = [path] + sorted(glob.glob(path + '.d/*.conf'))[:restart_runner.FILES_MAX]
    return '\n'.join(safe_read.read_text(p, restart_runner.FILE_LIMIT, follow=True).data or '' for p in paths)


def _runs_gunicorn(argv):
    head = argv[:3]
    return os.path.basename(head[0]).startswith('gunicorn') or any(
        a == '-m' and b == 'gunicorn' for a, b in zip(head, head[1:]))


def why_not_alone(path, app, chdir):
    """'' when the unit (with its drop-ins) runs this app's gunicorn in chdir and nothing else, else why not."""
    text = _unit_text(path)
    starts = service_env.systemd_values(text, 'ExecStart')
    if len(starts) != 1:
        return 'it has %d ExecStart= lines' % len(starts)
    try:
        argv = shlex.split(starts[0].lstrip('-@:+!'))
    except ValueError:
        argv = []
    if not argv or not _runs_gunicorn(argv) or app not in argv:
        return 'its ExecStart= is not gunicorn running %s: %s' % (app, starts[0][:120])
    workdir = service_env.systemd_values(text, 'WorkingDirectory')
    if not workdir or os.path.realpath(workdir[-1].lstrip('-')) != os.path.realpath(chdir):
        return 'its WorkingDirectory= is not %s' % chdir
    others = ['%s=%s' % (key, value[:80]) for key in OTHER_EXEC for value in service_env.systemd_values(text, key)]
    if others:
        return 'it also runs %s' % '; '.join(others)
    return service_user.unsafe_reason(path) or ''


def _state(ctl, root, unit):
    """What makes the unit a runner now: 'enabled' and/or 'active' ('' when neither)."""
    found = []
    if (ctl(*_on(root) + ['is-enabled', unit])[1].strip().splitlines() or [''])[-1] in ENABLED:
        found.append('enabled')
    if root == '/' and (ctl('is-active', unit)[1].strip().splitlines() or [''])[-1] in ACTIVE:
        found.append('active')
    return ' and '.join(found)


def _refused(unit, path, managed, why):
    return {'pid': None, 'cmdline': path, 'cwd': None, 'kind': 'systemd_unit', 'unit': unit,
            'reason': 'a second systemd unit of the app, %s (%s), beside %s: not disabled: %s; disable it yourself '
                      '(`systemctl disable --now %s`, or remove the file), then run stabilize again' % (
                          unit, path, managed, why, unit)}


def choose(app, chdir, unit_dir, managed, conflicts, ctl):
    """Units of unit_dir other than `managed` that run the app in chdir and are enabled or active -> (units to
    disable, conflicts left). ctl(*args) -> (rc, output) runs systemctl; None when there is none. A master
    systemd runs for a chosen unit (conflict['unit']) is the unit's to stop: taken out of the conflicts."""
    root, chosen, left = unit_root(unit_dir), [], list(conflicts)
    for path, dummy in service_env.find_unit_environments(app, unit_dirs=[unit_dir], chdir=chdir):
        unit = os.path.basename(path)
        if unit == managed:
            continue
        if ctl is None or root is None:
            left.append(_refused(unit, path, managed, 'systemctl is not found' if ctl is None else
                                 '%s is no directory systemd reads (a standard unit directory, or ROOT%s)' % (
                                     unit_dir, restart_runner.STANDARD_UNIT_DIRS[0])))
            continue
        state = _state(ctl, root, unit)
        why = why_not_alone(path, app, chdir) if state else ''
        if why:
            left.append(_refused(unit, path, managed, why))
        elif state:
            pids = [c['pid'] for c in left if c.get('unit') == unit]
            left = [c for c in left if c.get('unit') != unit]
            chosen.append({'pid': None, 'unit': unit, 'file': path, 'root': root, 'state': state, 'pids': pids,
                           'kind': 'systemd_unit', 'cmdline': path,
                           'reason': 'a second systemd unit of the app beside %s (%s; two runners, runbook 3.3): systemctl %s' % (
                               managed, state, ' '.join(command(root, 'disable', unit)))})
    return chosen, left


def _on(root):
    return [] if root == '/' else ['--root=' + root]


def command(root, verb, unit):
    """systemctl's arguments to disable (or enable again) a unit: with --now on this host, --root=ROOT for another."""
    return _on(root) + [verb] + (['--now'] if root == '/' else []) + [unit]


def disable(psutil, chosen, ctl, grace):
    """Disable each chosen unit (marked `done`); on this host (--now) wait for the masters systemd ran for it -> the
    pids still alive. Raises ServiceError naming the unit when systemctl refuses."""
    procs = []
    for entry in chosen:
        for pid in entry['pids'] if entry['root'] == '/' else ():
            try:
                procs.append(psutil.Process(pid))
            except Exception:  # already gone
                pass
        rc, out = ctl(*command(entry['root'], 'disable', entry['unit']))
        if rc != 0:
            raise service_control.ServiceError(
                'systemctl %s refused: %s; disable %s yourself (or remove %s), then run stabilize again' % (
                    ' '.join(command(entry['root'], 'disable', entry['unit'])), ' '.join((out or '').split())[:300],
                    entry['unit'], entry['file']))
        entry['done'] = True
    return [p.pid for p in processes.wait_gone(psutil, procs, grace + 5)]


def enable(entry, ctl):
    """Rollback: enable (and on this host start) a unit this module disabled."""
    rc, out = ctl(*command(entry['root'], 'enable', entry['unit']))
    if rc != 0:
        raise service_control.ServiceError('systemctl %s: %s' % (
            ' '.join(command(entry['root'], 'enable', entry['unit'])), ' '.join((out or '').split())[:300]))
    return '%s (%s)' % (entry['unit'], entry['file'])
