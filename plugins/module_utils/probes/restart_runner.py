# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who restarts the app's masters, with the setting that makes it do so: facts only (read-only, bounded).

In this order (the first found is the one the report names, the others are kept too):
1. the parent chain of each master (probes.process.identify_runner): a shell loop (its PID and command), a platform
   runner (honcho, s6, ...), supervisord
   (its program, found by the SUPERVISOR_PROCESS_NAME it gives the master, read from its config and includes with
   autorestart= / startsecs= / startretries=), a systemd unit (from the master's cgroup; the unit file read for
   Restart= / RestartSec= / WatchdogSec= / RuntimeMaxSec=), cron;
2. a shell loop whose command runs the app while no master of it is its child (between two restarts);
3. a systemd unit (doctor_systemd_unit_dir, then the standard directories) or a supervisord program whose command
   runs the app in its directory, when it restarts what exits;
4. a crontab line that names the app.
Beside them, best effort: local health checkers (curl or wget, alone or in a shell loop) that ask a port of this
host other than the app's - a platform that restarts what its check cannot reach.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os
import re

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import safe_read
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.processes import is_within
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import process

STANDARD_UNIT_DIRS = ('/etc/systemd/system', '/run/systemd/system', '/lib/systemd/system', '/usr/lib/systemd/system')
SYSTEMD_RESTART_KEYS = ('Restart', 'RestartSec', 'WatchdogSec', 'RuntimeMaxSec')
SUPERVISORD_DEFAULT_CONFS = ('/etc/supervisord.conf', '/etc/supervisor/supervisord.conf')
CRONTABS = ('/etc/crontab', '/etc/cron.d/*', '/var/spool/cron/crontabs/*', '/var/spool/cron/*')
FILE_LIMIT = 256 << 10    # a unit, a supervisord config, a crontab: small files
FILES_MAX = 64            # files read per glob
KEPT = 5
LOCAL_URL = re.compile(r'\bhttps?://(?:127\.\d+\.\d+\.\d+|localhost|0\.0\.0\.0|\[::1\])(?::(\d+))?')
CHECKERS = ('curl', 'wget')


# --- supervisord's config (also read by stabilize.service_control) -------------------------------------------------
def arg_after(argv, names):
    """The value of the first of `names` in argv (`-c FILE` or `--configuration=FILE`), or None."""
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + '='):
                return arg.split('=', 1)[1]
    return None


def supervisord_conf_path(argv, cwd):
    """The config a supervisord command line runs with: its -c (relative to its cwd), else the first default
    config that exists, else None."""
    conf = arg_after(argv, ('-c', '--configuration'))
    if conf and not os.path.isabs(conf):
        conf = os.path.join(cwd or '/', conf)
    return conf or next((c for c in SUPERVISORD_DEFAULT_CONFS if os.path.isfile(c)), None)


def supervisord_include_globs(conf_path):
    """The `[include] files=` globs of a supervisord config, absolute (relative ones are from its directory)."""
    text = safe_read.read_text(conf_path, FILE_LIMIT, follow=True).data if conf_path else None
    globs, section = [], None
    for raw in (text or '').splitlines():
        line = raw.strip()
        if line.startswith('['):
            section = line.strip('[]').strip()
        elif section == 'include' and line.startswith('files') and '=' in line:
            globs += [p if os.path.isabs(p) else os.path.join(os.path.dirname(conf_path), p)
                      for p in line.split('=', 1)[1].split()]
    return globs


def _files(patterns):
    """The files the glob patterns name, at most FILES_MAX per pattern."""
    return [path for pattern in patterns for path in sorted(glob.glob(pattern))[:FILES_MAX]]


def _program(paths, name):
    """(path, program settings) of supervisord program `name` in the first file of `paths` that has it."""
    for path in _files(paths):
        program = service_env.parse_supervisord_programs(service_env.read_text(path, FILE_LIMIT) or '').get(name)
        if program is not None:
            return path, program
    return None, None


def _supervisord_settings(program):
    """A program's restart settings, supervisord's default where it sets none (marked so)."""
    return dict((key, program[key] if program.get(key) else '%s (default)' % default)
                for key, default in sorted(service_env.RESTART_DEFAULTS.items()))


def _unit_settings(path):
    texts = [service_env.read_text(p, FILE_LIMIT) or '' for p in [path] + sorted(glob.glob(path + '.d/*.conf'))]
    return service_env.systemd_settings('\n'.join(texts), SYSTEMD_RESTART_KEYS)


# --- 1. the parent chain ------------------------------------------------------------------------------------------
def runner_of_master(psutil, master, unit_dirs):
    """The restarter behind one master, from its parent chain (master['runner'], identify_runner) -> a runner dict
    ({kind, pid, name, command, source, settings, found}) or None when the chain names none that restarts."""
    runner, pid = master['runner'], master['pid']
    found = 'the parent chain of master %d' % pid
    if runner['kind'] == 'shell_loop':   # a plain shell that started it once (a terminal, a script) restarts nothing
        return _runner('shell_loop', runner['pid'], _name(psutil, runner['pid']), runner['detail'], found=found)
    if runner['kind'] == 'platform':
        return _runner('platform', runner['pid'], _name(psutil, runner['pid']), runner['detail'], found=found)
    if runner['kind'] == 'cron':
        return _runner('cron', runner['pid'], 'cron', runner['detail'], found=found)
    if runner['kind'] == 'supervisord':
        return _supervisord_runner(psutil, runner['pid'], pid, found)
    if runner['kind'] == 'systemd':
        path = next((p for p in (os.path.join(d, runner['detail']) for d in unit_dirs) if os.path.isfile(p)), None)
        return _runner('systemd', None, runner['detail'], None, source=path,
                       settings=_unit_settings(path) if path else {}, found='the cgroup of master %d' % pid)
    return None


def _supervisord_runner(psutil, sup_pid, master_pid, found):
    name = (service_env.read_proc_environ(master_pid) or {}).get('SUPERVISOR_PROCESS_NAME')
    try:
        proc = psutil.Process(sup_pid)
        conf = supervisord_conf_path(proc.cmdline(), proc.cwd())
    except Exception:  # gone or not ours to read
        conf = None
    path, program = _program([conf] + supervisord_include_globs(conf), name) if conf and name else (None, None)
    return _runner('supervisord', sup_pid, name or 'supervisord', (program or {}).get('command'), source=path or conf,
                   settings=_supervisord_settings(program) if program else {}, found=found)


def _name(psutil, pid):
    try:
        return psutil.Process(pid).name()
    except Exception:  # gone meanwhile
        return 'shell'


def _runner(kind, pid, name, command, source=None, settings=None, found=''):
    return {'kind': kind, 'pid': pid, 'name': name, 'command': (command or '')[:200] or None, 'source': source,
            'settings': settings or {}, 'found': found}


# --- 2. - 4. without a master to start from ---------------------------------------------------------------------
def shell_loops(psutil, app, chdir, table=None):
    """Shell loops whose own command line runs the app (`while true; do gunicorn APP ...; done`) in its directory (they
    run in it, or name it): the same app spec in another checkout is another app. `table`: process.scan()'s."""
    found = []
    for proc, info in process.scan(psutil) if table is None else table:
        cmd = ' '.join(info['cmdline'])
        if info['name'] not in process.SHELLS or app not in cmd or not re.search(r'\b(while|until|for)\b', cmd):
            continue
        try:
            here = chdir in cmd or is_within(proc.cwd(), chdir)
        except Exception:  # gone or not ours to read
            continue
        if here:
            found.append(_runner('shell_loop', proc.pid, info['name'], cmd, found='its command runs %s' % app))
    return found[:KEPT]


def configured_runners(app, chdir, unit_dirs, conf_globs=None):
    """systemd units and supervisord programs that run the app in chdir and restart it when it exits."""
    found = []
    for path, dummy in service_env.find_unit_environments(app, unit_dirs=unit_dirs, chdir=chdir):
        settings = _unit_settings(path)
        if settings.get('Restart', 'no') != 'no' or 'WatchdogSec' in settings or 'RuntimeMaxSec' in settings:
            found.append(_runner('systemd', None, os.path.basename(path), None, source=path, settings=settings,
                                 found='its ExecStart runs %s' % app))
    conf_args = {'conf_globs': conf_globs} if conf_globs else {}
    for where, dummy in service_env.find_supervisord_environments(app, chdir=chdir, **conf_args):
        path, dummy, name = where.partition(' [program:')
        program = _program([path], name.rstrip(']'))[1] or {}
        found.append(_runner('supervisord', None, name.rstrip(']'), program.get('command'), source=path,
                             settings=_supervisord_settings(program), found='its command runs %s' % app))
    return found[:KEPT]


def crontab_lines(patterns, words):
    """(file, line) of each crontab line (not a comment) that holds one of `words`."""
    for path in _files(patterns):
        for line in (safe_read.read_text(path, FILE_LIMIT, follow=True).data or '').splitlines():
            text = line.strip()
            if text and not text.startswith('#') and any(w in text for w in words if w):
                yield path, text


def cron_lines(app, chdir, patterns=CRONTABS):
    """Crontab lines (not comments) that name the app or its directory -> [runner]."""
    return [_runner('cron', None, 'cron', text, source=path, found='a crontab line names %s' % app)
            for path, text in crontab_lines(patterns, (app, chdir))][:KEPT]


def health_checkers(psutil, port, healthz_path, table=None):
    """curl / wget (alone or in a shell's command) asking the health path of a local URL on a port other than the
    app's (the path keeps unrelated local requests out). `table`: process.scan()'s."""
    found = []
    for proc, info in process.scan(psutil) if table is None else table:
        argv = info['cmdline']
        cmd = ' '.join(argv)
        checker = any(os.path.basename(a) in CHECKERS for a in argv[:1]) or \
            (os.path.basename(argv[0]) in process.SHELLS if argv else False) and re.search(r'\b(curl|wget)\b', cmd)
        if not checker or healthz_path not in cmd:
            continue
        ports = set(int(m.group(1) or (443 if m.group(0).startswith('https') else 80)) for m in LOCAL_URL.finditer(cmd))
        if ports and port not in ports:
            found.append({'pid': proc.pid, 'command': cmd[:200], 'ports': sorted(ports)})
    return found[:KEPT]


def collect(psutil, app, chdir, masters, port, healthz_path, unit_dir=None, conf_globs=None, crontabs=CRONTABS,
            table=None):
    """-> {'runners': [runner, ...] (the first is the one to name), 'health_checkers': [...]}. `table`: the process
    table (process.scan()), scanned here when not given."""
    table = process.scan(psutil) if table is None else table
    unit_dirs = ([unit_dir] if unit_dir else []) + [d for d in STANDARD_UNIT_DIRS if d != unit_dir]
    runners = []
    for master in sorted(masters, key=lambda m: m['age']):   # the youngest: the one just restarted
        runner = runner_of_master(psutil, master, unit_dirs)
        if runner and not any(r['kind'] == runner['kind'] and r['pid'] == runner['pid'] for r in runners):
            runners.append(runner)
    chained = set(r['pid'] for r in runners)
    runners += [r for r in shell_loops(psutil, app, chdir, table) if r['pid'] not in chained]
    sources = set(r['source'] for r in runners if r['source'])
    runners += [r for r in configured_runners(app, chdir, unit_dirs, conf_globs) if r['source'] not in sources]
    runners += cron_lines(app, chdir, crontabs)
    return {'runners': runners[:KEPT], 'health_checkers': health_checkers(psutil, port, healthz_path, table)}
