# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the clean-up (runbook 1.1: stop_strays with its `archive`) would find to do on the host now, read-only.

service_apply state=found asks it beside service_info's answer, so the stabilize plan can skip the clean-up as one
task when nothing is left (the idempotent run: one module call less). It makes stop_strays' own choices - the same
`strays.choose`, `second_units.choose` and `logs_archive.plan` - never a second judgement; anything it cannot read
counts as something to clean, so the clean-up then runs and says what it found."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import (
    logs_archive, second_units, service_found, service_pass, strays)


def runner_ctl(run_command, argv):
    """-> ctl(*args) -> (rc, output) running argv + args (supervisorctl -c CONF, systemctl)."""
    def ctl(*args):
        rc, out, err = run_command(argv + list(args))
        return rc, (out or '') + (err or '')
    return ctl


def second_units_of(app, chdir, unit_dir, unit, conflicts, systemctl, run_command):
    """The second systemd units of the app beside `unit` in unit_dir (second_units.choose, with systemctl when it
    is a file) -> (units to disable, conflicts left, ctl or None)."""
    ctl = runner_ctl(run_command, [systemctl]) if systemctl and os.path.isfile(systemctl) else None
    chosen, left = second_units.choose(app, chdir, unit_dir, unit, conflicts, ctl)
    return [dict(e, systemctl=systemctl) for e in chosen], left, ctl


def _item(kind, what):
    return {'kind': kind, 'what': what}


def survey(psutil, p, service, run_command, systemctl=None, facts=None):
    """What stop_strays would stop, disable, refuse or archive for the service found -> dict(port: the port whose
    foreign holders were looked for, left: [{kind, what}]). Kinds: stop (a process), conflict (stabilize would stop
    there), port_holder (a process on `port` that is not the app's), second_unit, log (to archive), refused_log.

    p: service_apply's app, chdir, name, unit_dir, `clean` (port) and `archive` (paths, patterns, archive_dir); service:
    service_found.find's answer (its pid is kept, its user's runs are the ones stopped, its start splits the logs);
    facts: service_found.app_processes' answer that find read, read once for both."""
    clean, archive = p['clean'], p['archive']
    run_as = service.get('run_as') or {}
    uid = run_as.get('uid') if run_as.get('user') else None
    keep = [service['pid']] if service.get('pid') else []
    found = strays.choose(psutil, p['app'], p['chdir'], clean.get('port'), keep, uid=uid, facts=facts)
    conflicts, units = found['conflicts'], []
    if service.get('manager') == 'systemd' and p.get('unit_dir'):
        units, conflicts, dummy = second_units_of(p['app'], p['chdir'], p['unit_dir'], p['name'] + '.service',
                                                  conflicts, systemctl, run_command)
    left = [_item('stop', strays.describe(e)) for e in found['stop']]
    left += [_item('port_holder' if c['kind'] == 'port_holder' else 'conflict', strays.describe(c)) for c in conflicts]
    left += [_item('second_unit', e['reason']) for e in units]
    to_archive, dummy, refused = logs_archive.plan(psutil, archive.get('paths') or [], archive.get('patterns') or [],
                                                   archive['archive_dir'], service.get('started') or 0, holders=False)
    left += [_item('log', path) for path, dummy in to_archive]
    left += [_item('refused_log', '%s: %s' % (r['path'], r['why'])) for r in refused]
    return {'port': clean.get('port'), 'left': left}


def found(psutil, p, run_command, systemctl, warn):
    """service_apply state=found's answer for its options `p`: service_info's, with what the clean-up would find to
    do (`left_to_clean`, when p has `clean`). Raises service_pass.PassError when the service cannot be found."""
    surveyed = p.get('clean') and p.get('archive')
    # Read once for both: the service's masters and the strays among the app's processes.
    facts = service_found.app_processes(psutil, p['app'], p['chdir']) if surveyed else None
    service = service_pass.found_service(psutil, p, run_command, facts)
    left = None
    if surveyed:
        try:
            left = survey(psutil, p, service, run_command, systemctl, facts)
        except (IOError, OSError) as e:
            warn('what the clean-up would do is not known: %s' % e)
    if p.get('clean'):
        # The strays' command lines (a database URL, a token): redacted before they leave the host.
        service['left_to_clean'] = redact(left)
    return service
