# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One pass of the gunicorn_service role on the host, in one call (service_apply): the service directory, the
carried environment, the runner's files (runner_files) with an owner-only copy of what each held before, a
systemd unit checked by `systemd-analyze verify` before it is written, then a restart when a file changed (its
logs archived while it is stopped) or a start when it does not run. `roll_back` undoes a pass from what it
returned (`undo`). `change_state` is service_state's too: one way to start, restart and stop a service."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat
import time

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import files
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import (
    carried_env, logs_archive, runner_files, service_control, service_found)

# The manager's word for a service that ran: restarted on rollback (a program caught restarting too), not stopped.
RAN = ('RUNNING', 'STARTING', 'BACKOFF', 'ACTIVE', 'ACTIVATING', 'RELOADING')
# Shown in a diff instead of a runner file's old content, which may set the service's variables (credentials).
HIDDEN = '(the old content is not shown: it may set the service\'s variables)\n'
STATE_KEYS = ('app', 'chdir', 'manager', 'name', 'pidfile', 'start_script', 'console_log', 'log_files',
              'supervisorctl', 'supervisord_conf', 'grace', 'start_timeout')


class PassError(Exception):
    """A step of the pass failed; `result` holds what was done until then (and how to undo it)."""

    def __init__(self, msg, result):
        super(PassError, self).__init__(msg)
        self.result = result


def change_state(psutil, params, run_command, wanted, check_mode, archive=None):
    """Start, restart (archiving `archive`'s logs while stopped) or stop the service params describes.
    -> result (changed, pid, previous_pid, actions, archived); raises PassError (its result says what was done)."""
    service = service_control.Service(psutil, params, run_command)
    result = dict(changed=False, pid=None, previous_pid=None, actions=[], archived=[])
    try:
        before = service.status()
        result.update(pid=before['pid'], previous_pid=before['pid'])
        if wanted == 'started' and before['running']:
            return result
        if wanted == 'stopped' and not before['running'] and before['state'] in ('UNKNOWN', 'STOPPED', 'NO_SYSTEMD'):
            return result
        result['changed'] = True
        if check_mode:
            verb = {'started': 'start', 'restarted': 'restart', 'stopped': 'stop'}[wanted]
            return dict(result, pid=None, actions=['would %s %s (%s)' % (verb, params['name'], params['manager'])])
        if wanted in ('restarted', 'stopped'):
            sent = service.stop()
            result['actions'].append('stopped %s (%s)' % ('master %d' % before['pid'] if before['pid'] else 'its program',
                                                          ', '.join(sent) or 'not running'))
            result['pid'] = None
        if wanted == 'restarted' and archive:
            done = logs_archive.run(psutil, archive['paths'], archive['patterns'], archive['archive_dir'],
                                    archive['stamp'], archive['keep'], current_since=archive.get('current_since') or 0)
            result['archived'] = done['archived']
            if done['archived']:
                result['actions'].append('archived %d log(s) into %s' % (len(done['archived']), done['archive']))
        if wanted in ('restarted', 'started'):
            after = service.start()
            result['pid'] = after['pid']
            result['actions'].append('started master %d' % after['pid'])
    except service_control.ServiceError as e:
        raise PassError(str(e), dict(result, changed=bool(result['actions'])))
    except (IOError, OSError) as e:
        raise PassError('%s: %s' % (params['name'], e), dict(result, changed=bool(result['actions'])))
    return result


# --- where the pass writes ----------------------------------------------------------------------------------
def layout(p):
    """The paths, the user and the manager of this pass, from service_apply's parameters and service_info's answer."""
    service, directory = p['service'], p['service_dir']
    run_as = service.get('run_as') or {}
    manager = service['manager']
    run_dir = directory + '/run'
    program_dir = p.get('program_dir') or service.get('supervisord_conf_dir') or '/etc/supervisor/conf.d'
    spec = dict(p, manager=manager, run_as=run_as, user=run_as.get('user') or '', group=run_as.get('group') or '',
                uid=run_as.get('uid'), gid=run_as.get('gid') if run_as.get('user') else None,
                home=run_as.get('home') or '/', run_dir=run_dir, pidfile=run_dir + '/gunicorn.pid',
                run_script=directory + '/run.sh', runner_env=directory + '/runner.env',
                carried_env=directory + '/carried.env', console_log=directory + '/console.log',
                backup_dir=directory + '/backup', unit='%s/%s.service' % (p['unit_dir'], p['name']),
                program='%s/%s.conf' % (program_dir, p['name']),
                environment=dict((str(k), str(v)) for k, v in (p.get('environment') or {}).items()),
                supervisorctl=p.get('supervisorctl') or service.get('supervisorctl'),
                supervisord_conf=p.get('supervisord_conf') or service.get('supervisord_conf'))
    spec['log'] = p.get('log_file') or ('-' if manager == 'systemd' else run_dir + '/gunicorn.log')
    spec['runner_file'] = {'systemd': spec['unit'], 'supervisord': spec['program']}.get(manager, spec['runner_env'])
    spec['files'] = [path for path, _text, _mode, _gid in runner_files.render(dict(spec, carried_env_files=[]))]
    console = [] if manager == 'systemd' else [spec['console_log']]
    spec['log_files'] = ([spec['log']] if spec['log'] != '-' else []) + console
    return spec


def state_params(spec):
    params = dict((key, spec.get(key)) for key in STATE_KEYS)
    params.update(start_script=spec['run_script'], log_files=[spec['log']] if spec['log'] != '-' else [],
                  console_log=spec['console_log'] if spec['manager'] != 'systemd' else None)
    return params


def ensure_dir(path, uid, gid, mode, check_mode):
    """Like ansible.builtin.file state=directory: create it, or set its mode and owner. -> changed."""
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None and stat.S_IMODE(st.st_mode) == mode and uid in (None, st.st_uid) and gid in (None, st.st_gid):
        return False
    if not check_mode:
        if st is None:
            os.makedirs(path, mode)
        os.chmod(path, mode)
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    return True


def make_dirs(spec, check_mode):
    """The service's user may traverse the service directory and write only its run directory: the start script
    root runs, the carried credentials and the backups stay root's."""
    user_gid = spec['gid'] if spec['user'] else None
    wanted = [(spec['service_dir'], None, user_gid, 0o750), (spec['backup_dir'], None, None, 0o700),
              (spec['run_dir'], spec['uid'] if spec['user'] else None, user_gid, 0o750)]
    return [path for path, uid, gid, mode in wanted if ensure_dir(path, uid, gid, mode, check_mode)]


def carry(spec, check_mode, diff):
    """The variables the service's runner file gives it now, kept in carried.env (names only in a diff)."""
    env_file = spec.get('env_file')
    return carried_env.carry({
        'path': spec['carried_env'], 'manager': spec['manager'], 'runner_file': spec['runner_file'],
        'name': spec['name'], 'exclude': sorted(spec['environment']),
        'exclude_files': [spec['runner_env']] + ([env_file] if env_file else []),
        # A supervisord program runs its start script as the service's user, which reads the carried file.
        'group': spec['group'] if spec['user'] and spec['manager'] == 'supervisord' else None}, check_mode, diff)


# --- the runner's files ------------------------------------------------------------------------------------------
def file_state(path):
    """-> (text or None, stat or None) of a runner file as it is now."""
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return service_env.read_text(path) or '', st


def keep_backup(spec, path, stamp):
    """An owner-only copy of what `path` holds, in the service's backup directory. -> its path."""
    with open(path, 'rb') as f:
        data = f.read()
    backup = '%s/%s.%s~' % (spec['backup_dir'], os.path.basename(path), stamp)
    files.write_atomically(backup, data.decode('utf-8', 'surrogateescape'), 0o600, os.geteuid(), os.getegid())
    return backup


def file_diff(path, old, text, hidden):
    return {'before_header': path, 'after_header': path, 'before': HIDDEN if hidden and old else (old or ''),
            'after': text}


def write_files(spec, out, run_command, check_mode, diff):
    """Each runner file that differs (content, mode, group): a unit checked first, the old content kept, written
    atomically. Records each in out['undo'] as it goes, so a failure half way can still be undone."""
    stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
    hide = out['carried']['foreign'] or bool(out['carried']['from_runner_file'])
    for path, text, mode, gid in runner_files.render(spec):
        old, st = file_state(path)
        if st is not None and old == text and stat.S_IMODE(st.st_mode) == mode and gid in (None, st.st_gid):
            continue
        out['before'][path] = {'mode': '%04o' % stat.S_IMODE(st.st_mode), 'uid': st.st_uid, 'gid': st.st_gid} \
            if st is not None else None
        if path == spec['unit']:
            verify_unit(spec, text, run_command, out)
        if diff:
            out['diff'].append(file_diff(path, old, text, hide and path == spec['runner_file']))
        out['changed_files'].append(path)
        if check_mode:
            continue
        out['undo']['files'][path] = keep_backup(spec, path, stamp) if st is not None else ''
        owner = (st.st_uid, st.st_gid) if st is not None else (os.geteuid(), os.getegid())
        files.write_atomically(path, text, mode, owner[0], owner[1] if gid is None else gid)


def verify_unit(spec, text, run_command, out):
    ok, output = service_control.verify_unit(text, spec['name'] + '.service', run_command)
    if ok is None:
        out['warnings'].append('%s: the unit was not verified' % output)
    elif not ok:
        raise PassError('systemd-analyze verify rejects %s.service: %s' % (spec['name'], output), {})


def archive_spec(spec):
    """What a restart archives: the service's logs and their rotations, with the `archive` option's own paths."""
    archive = spec.get('archive') or {}
    if not (archive.get('archive_dir') and archive.get('stamp')):
        return None
    return dict(archive, paths=spec['log_files'] + list(archive.get('paths') or []),
                patterns=[path + '.*' for path in spec['log_files']] + list(archive.get('patterns') or []))


# --- the pass, and its undoing -------------------------------------------------------------------------------
def new_result(spec):
    service = spec['service']
    run_as = spec['run_as']
    who = '%s:%s (%s)' % (spec['user'], spec['group'], run_as.get('source')) if spec['user'] else 'root'
    return dict(changed=False, manager=spec['manager'], why=service.get('why'), name=spec['name'],
                worker_class=spec['worker_class'], run_as=who, files=spec['files'], log_files=spec['log_files'],
                command=runner_files.command(spec), previous_pid=service.get('pid'), dirs=[], changed_files=[],
                restarted=False, restart_actions=[], started=False, pid=None, diff=[], warnings=[], before={},
                carried={'names': [], 'env_files': [], 'foreign': False, 'from_runner_file': []},
                # `run`: the stabilize run (its archive stamp) whose pass this is - an older pass is never undone.
                undo={'run': (spec.get('archive') or {}).get('stamp') or '', 'files': {}, 'before': {}, 'touched': False,
                      'start': bool(spec.get('start', True)),
                      'ran': bool(service.get('running')) or service.get('state') in RAN,
                      'service': state_params(spec)})


def run_state(psutil, spec, out, run_command, check_mode):
    """Restart when a file changed or the caller asks (the env file the runner reads changed); else start it
    when it does not run."""
    if not spec.get('start', True):
        return
    restart = bool(out['changed_files']) or bool(spec.get('force_restart'))
    out['undo']['touched'] = bool(out['undo']['files']) or restart
    try:
        done = change_state(psutil, state_params(spec), run_command, 'restarted' if restart else 'started',
                            check_mode, archive_spec(spec) if restart else None)
    except PassError:
        out['undo']['touched'] = True
        raise
    out['pid'] = done['pid']
    if restart:
        out.update(restarted=done['changed'], restart_actions=done['actions'])
    else:
        out['started'] = out['undo']['touched'] = done['changed']


def finish(out):
    out['undo']['before'] = out.pop('before')
    out['undo']['touched'] = out['undo']['touched'] or bool(out['undo']['files'])
    out['changed'] = bool(out['dirs'] or out['carried'].get('changed') or out['changed_files'] or out['restarted']
                          or out['started'])
    if not out['diff']:
        out.pop('diff')
    return out


def found_service(psutil, p, run_command, facts=None):
    """service_info's answer for this pass: the caller's, else found here - one call on the host, not two. facts:
    service_found.app_processes' answer when the caller has it."""
    if p.get('service'):
        return p['service']
    directory = p['service_dir']
    wanted = dict((key, p.get(key)) for key in ('app', 'chdir', 'manager', 'name', 'supervisorctl', 'supervisord_conf',
                                                'env_file', 'user', 'group', 'unit_dir', 'program_dir', 'python'))
    wanted.update(pidfile=directory + '/run/gunicorn.pid', start_script=directory + '/run.sh')
    try:
        return service_found.find(psutil, wanted, run_command, facts)
    except service_found.NotFound as e:
        raise PassError(str(e), {})


def apply(psutil, p, run_command, check_mode=False, diff=False):
    """One pass: -> its result (gunicorn_service_result, with `undo` for roll_back). Raises PassError."""
    spec = layout(dict(p, service=found_service(psutil, p, run_command)))
    bad = runner_files.problems(spec)
    if bad:
        raise PassError('; '.join(bad), {})
    out = new_result(spec)
    try:
        out['dirs'] = make_dirs(spec, check_mode)
        carried = carry(spec, check_mode, diff)
        out['carried'] = dict(carried, diff=None)
        out['diff'] += [carried['diff']] if carried.get('diff') else []
        spec['carried_env_files'] = carried['env_files']
        write_files(spec, out, run_command, check_mode, diff)
        run_state(psutil, spec, out, run_command, check_mode)
    except PassError as e:
        raise PassError(str(e), finish(dict(out, **dict((k, v) for k, v in e.result.items() if k == 'actions'))))
    except carried_env.CarryError as e:
        raise PassError(str(e), finish(out))
    except (IOError, OSError) as e:
        raise PassError('%s: %s' % (p['name'], e), finish(out))
    return finish(out)


def restore(path, backup, before):
    """Put back what `path` held (its backup), with its mode and owner."""
    with open(backup, 'rb') as f:
        text = f.read().decode('utf-8', 'surrogateescape')
    files.write_atomically(path, text, int(before.get('mode') or '0600', 8), before.get('uid'), before.get('gid'))


def roll_back(psutil, undo, run_command, check_mode=False):
    """Undo a pass from its `undo`: each file back as it was (a created one removed), and the service run as the
    pass found it - restarted on the old files when it ran, else stopped. Nothing happens when the pass changed
    nothing. Raises PassError."""
    restored, removed = [], []
    try:
        for path, backup in sorted((undo.get('files') or {}).items()):
            if backup:
                if not check_mode:
                    restore(path, backup, (undo.get('before') or {}).get(path) or {})
                restored.append(path)
            else:
                if not check_mode and os.path.lexists(path):
                    os.unlink(path)
                removed.append(path)
    except (IOError, OSError) as e:
        raise PassError('cannot put back %s: %s' % (path, e), {'restored': restored, 'removed': removed})
    wanted = 'restarted' if undo.get('ran') else 'stopped'
    result = dict(changed=bool(restored or removed), done=bool(undo.get('touched')), restored=restored,
                  removed=removed, state=wanted, pid=None, actions=[])
    if undo.get('touched') and undo.get('start', True):
        try:
            done = change_state(psutil, undo['service'], run_command, wanted, check_mode)
        except PassError as e:
            raise PassError(str(e), dict(result, **e.result))
        result.update(changed=result['changed'] or done['changed'], pid=done['pid'], actions=done['actions'])
    return result
