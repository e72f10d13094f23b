# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A second supervisord program of the app beside the one stabilize manages (runbook 3.3, two runners): its
master cannot be stopped by PID (supervisord would start it again), so its program entry is disabled - its
file renamed out of supervisord's [include] glob, `supervisorctl update` - in the supervisord stabilize manages
only, and only when the program provably runs this app in this directory and its file holds that program alone.
A failed stabilize run gives it back (`enable`: the file renamed back, `supervisorctl update`).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fnmatch
import os
import re

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import processes, safe_read, service_user
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import service_control

DISABLED_SUFFIX = '.disabled-by-gunicorn-doctor'


def program_pids(ctl):
    """`supervisorctl status` -> {pid: program name} of the running programs."""
    rc, out = ctl('status')
    return dict((int(m.group(2)), m.group(1)) for m in re.finditer(r'^(\S+)\s+RUNNING\s+pid (\d+)', out or '', re.M))


def _include_patterns(conf):
    text = safe_read.read_text(conf, service_control.MAX_CONF_BYTES, follow=True).data
    return [p for section, values in service_control.config_sections(text) if section == 'include'
            for p in values.get('files', '').split()]


def _why_not(program, name, app, chdir, conf):
    """'' when the program's entry may be disabled, else why not."""
    if program is None:
        return 'its program %s is not in %s or its [include] files' % (name, conf)
    if not service_control.program_runs_app(program, app, chdir):
        return 'its program %s does not run %s in %s' % (name, app, chdir)
    text = safe_read.read_text(program['file'], service_control.MAX_CONF_BYTES, follow=True).data
    sections = service_control.config_sections(text)
    if program['file'] == conf or [s for s, v in sections] != ['program:' + name]:
        return '%s holds more than the program %s' % (program['file'], name)
    unsafe = service_user.unsafe_reason(program['file'])
    if unsafe:
        return '%s: %s' % (program['file'], unsafe)
    disabled = os.path.basename(program['file'] + DISABLED_SUFFIX)
    if any(fnmatch.fnmatch(disabled, os.path.basename(p)) for p in _include_patterns(conf)):
        return 'a renamed %s would still be included' % program['file']
    return ''


def choose(conflicts, app, chdir, conf, managed, ctl):
    """Split stray_strays' conflicts -> (programs to disable, conflicts left). A master of the app that the managed
    supervisord runs under another program than `managed` is a second runner: [dict(pid, program, file, ...)]."""
    running = program_pids(ctl)
    programs = dict((p['name'], p) for p in service_control.supervisord_programs(conf))
    disable, left = [], []
    for conflict in conflicts:
        # The program's own pid, else the name supervisord put in the master's environment (a program whose command
        # is a script that runs gunicorn without exec: supervisord's pid is the shell's).
        name = running.get(conflict['pid']) or conflict.get('program')
        if conflict.get('kind') == 'gunicorn_master' and name == managed:
            continue   # the service's own master, started again by its program since the service was found
        if conflict.get('kind') != 'gunicorn_master' or not name:
            left.append(conflict)
            continue
        why = _why_not(programs.get(name), name, app, chdir, conf)
        if why:
            left.append(dict(conflict, reason='%s; not disabled: %s' % (conflict['reason'], why)))
            continue
        disable.append({'pid': conflict['pid'], 'create_time': conflict.get('create_time'), 'program': name,
                        'file': programs[name]['file'], 'cmdline': conflict['cmdline'], 'kind': 'supervisord_program',
                        'reason': 'a second supervisord program of the app beside %s (two runners, runbook 3.3): its '
                                  'file moved to %s%s' % (managed, programs[name]['file'], DISABLED_SUFFIX)})
    return disable, left


def disable(psutil, chosen, ctl, grace):
    """Rename each chosen program's file out of the [include] glob, `supervisorctl update` (supervisord stops
    and removes the program), wait for its master to be gone. -> the pids still alive."""
    if not chosen:
        return []
    procs = []
    for entry in chosen:
        try:
            master = psutil.Process(entry['pid'])
            procs += [master] + master.children(recursive=True)
        except Exception:  # already gone
            pass
        os.rename(entry['file'], entry['file'] + DISABLED_SUFFIX)
        entry['done'] = True
    rc, out = ctl('update')
    if rc != 0:
        raise service_control.ServiceError('supervisorctl update: %s' % (out or '').strip())
    return [p.pid for p in processes.wait_gone(psutil, procs, grace + 5)]


def enable(entry, ctl):
    """Rollback: the program's file back under its name, `supervisorctl update` (supervisord adds and starts it
    again). -> what was given back; raises ServiceError when that cannot be done."""
    moved = entry['file'] + DISABLED_SUFFIX
    if os.path.lexists(entry['file']) or not os.path.isfile(moved):
        raise service_control.ServiceError('%s cannot go back to %s: %s' % (
            moved, entry['file'], 'that name is taken' if os.path.lexists(entry['file']) else 'it is gone'))
    os.rename(moved, entry['file'])
    rc, out = ctl('update')
    if rc != 0:
        raise service_control.ServiceError('supervisorctl update: %s' % (out or '').strip())
    return '%s (%s)' % (entry['program'], entry['file'])
