# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner's files, rendered on the host by service_apply: a systemd unit, a supervisord program, the start
script (standalone: `gunicorn --daemon --pid FILE`; supervisord: in the foreground) and the runner's env file.

Every file runs the runbook's one canonical command (section 1.3 / 4.2: `-b 0.0.0.0:${PORT}`, PORT read from the
environment at start) and quotes each value the way its reader reads it (systemd, supervisord, sh). Values never
hold a control character (`problems` says which do, before anything is written)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import re

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.net import is_loopback

try:
    from shlex import quote as sh_quote
except ImportError:  # pragma: no cover - Python 2 targets are not supported
    from pipes import quote as sh_quote

MANAGED = 'Ansible managed'
# The runbook's --timeout / --keep-alive when the role's is 0.
RUNBOOK = {'sync': (60, 30), 'eventlet': (120, 75), 'gthread': (60, 30)}
PLAIN_ARG = re.compile(r'^[A-Za-z0-9_./:,+=@-]+$')
PLAIN_ENV = re.compile(r'^[A-Za-z0-9_./:@+,=-]*$')
NAME = re.compile(r'^[A-Za-z0-9_.@-]+$')
CONTROL = re.compile(r'[\x00-\x1f\x7f]')


# --- how each reader reads a value ------------------------------------------------------------------------
def sh(value):
    """A word sh reads back as `value`."""
    return sh_quote('%s' % value)


def systemd(value):
    """Any value of a unit: systemd expands %-specifiers everywhere."""
    return ('%s' % value).replace('%', '%%')


def _c_escaped(text):
    return text.replace('\\', '\\\\').replace('"', '\\"').replace('%', '%%')


def systemd_arg(value, dollar='$$'):
    """An ExecStart= argument: C escapes, %% and $$, double quotes around all but plain words."""
    text = '%s' % value
    escaped = _c_escaped(text).replace('$', dollar)
    return escaped if PLAIN_ARG.match(text) else '"%s"' % escaped


def systemd_exe(value):
    """ExecStart='s executable: systemd expands no variable in it, so a $ stays as it is."""
    return systemd_arg(value, '$')


def systemd_env(name, value):
    """Environment="NAME=value": C escapes and %%; systemd expands no variable there."""
    return '"%s"' % _c_escaped('%s=%s' % (name, value))


def supervisord(value):
    """Any value of a supervisord program: supervisord expands %(name)s everywhere."""
    return ('%s' % value).replace('%', '%%')


def supervisord_env(value):
    """A value of a program's environment=: double-quoted, as supervisord's parser reads it."""
    return '"%s"' % _c_escaped('%s' % value)


def env_value(value):
    """A value both sh and systemd's EnvironmentFile= read (service_env.env_line): plain, or double-quoted."""
    text = '%s' % value
    if PLAIN_ENV.match(text):
        return text
    for char in ('\\', '"', '$', '`'):
        text = text.replace(char, '\\' + char)
    return '"%s"' % text


# --- what the files hold ----------------------------------------------------------------------------------
def problems(spec):
    """What cannot go into a runner file, one phrase each ([] when all is well)."""
    found = []
    name = spec['name']
    if not (isinstance(name, str) and NAME.match(name) and name[:1] not in '.-'):
        found.append('service name %s is not valid: use letters, digits and _ . @ - only (no /, no spaces, no line '
                     'breaks; not starting with . or -) - set doctor_service_name' % json.dumps(name))
    # The stabilize role asks first, on the controller, before anything is read (stabilize_plan step=check).
    checked = [(key, spec.get(key)) for key in ('app', 'chdir', 'python', 'service_dir', 'log_file', 'env_file', 'bind', 'config',
                                                'unit_dir', 'program_dir', 'supervisorctl', 'supervisord_conf', 'user',
                                                'group', 'archive_dir')]
    for key, value in sorted((spec.get('environment') or {}).items()):
        checked += [('environment name %s' % key, key), ('environment %s' % key, value)]
    bad = [key for key, value in checked if isinstance(value, str) and CONTROL.search(value)]
    if bad:
        found.append('%s: a line break or another control character cannot go into a unit, a program or a start '
                     'script - fix the value' % ', '.join(bad))
    return found


def kept_bind(bind):
    """Whether the canonical command keeps `bind`: the app's own behind a proxy that holds $PORT - a unix socket or a
    loopback port (plan.runner_shape); anything else is the runbook's 0.0.0.0:$PORT."""
    bind = bind or ''
    host, sep, port = bind.rpartition(':')
    return bind.startswith('unix:/') or bool(sep and port.isdigit() and is_loopback(host.strip('[]')))


def command(spec, arg=sh, exe=sh):
    """The canonical command, each value quoted by `arg` (the executable by `exe`)."""
    timeout, keepalive = RUNBOOK.get(spec['worker_class'], RUNBOOK['sync'])
    timeout = int(spec.get('timeout') or 0) or timeout
    keepalive = int(spec.get('keepalive') or 0) or keepalive
    # The service's shape kept (stabilize/plan.runner_shape): its -c FILE, a unix socket behind a proxy on $PORT,
    # and the settings its config file or GUNICORN_CMD_ARGS set (spec['keep']: not on the command line, which wins).
    keep = spec.get('keep') or ()
    config = '-c %s ' % arg(spec['config']) if spec.get('config') else ''
    bind = arg(spec['bind']) if kept_bind(spec.get('bind')) else '0.0.0.0:${PORT}'
    workers = '' if 'workers' in keep else '-w %d ' % int(spec['workers'])
    tuning = ''.join(' --%s %d' % (option, value) for key, option, value in (
        ('timeout', 'timeout', timeout), ('keepalive', 'keep-alive', keepalive)) if key not in keep)
    return ('%s -m gunicorn %s -k %s %s%s-b %s%s --log-level debug --capture-output --access-logfile - '
            '--error-logfile %s' % (exe(spec['python']), arg(spec['app']), arg(spec['worker_class']), workers, config,
                                    bind, tuning, arg(spec['log'])))


def runner_env(spec):
    lines = ['# %s' % MANAGED,
             '# Environment of %s (sre.gunicorn_doctor); read before %s, which wins.' % (
                 spec['name'], spec.get('env_file') or 'the env file')]
    lines += ['%s=%s' % (name, env_value(value)) for name, value in sorted(spec['environment'].items())]
    return '\n'.join(lines) + '\n'


def unit(spec):
    user = ['User=%s' % spec['user'], 'Group=%s' % spec['group']] if spec['user'] else []
    env_files = [spec['carried_env']] + list(spec.get('carried_env_files') or []) + [spec['runner_env']]
    env_files += [spec['env_file']] if spec.get('env_file') else []
    lines = ['# %s' % MANAGED,
             "# %s: %s under gunicorn, the runbook's one command line" % (spec['name'], spec['app']),
             '# (sre.gunicorn_doctor). $PORT comes from the environment at start; never a port in the command.',
             '[Unit]', 'Description=Gunicorn %s (%s)' % (systemd(spec['app']), spec['name']), 'After=network.target', '',
             '[Service]', 'Type=simple'] + user + ['WorkingDirectory=%s' % systemd(spec['chdir'])]
    lines += ['Environment=%s' % systemd_env(name, value) for name, value in sorted(spec['environment'].items())]
    # The carried env files are kept as the old unit wrote them (unit syntax already).
    lines += ['EnvironmentFile=-%s' % (path if path in (spec.get('carried_env_files') or []) else systemd(path))
              for path in env_files]
    lines += ['ExecStart=%s' % command(spec, systemd_arg, systemd_exe), 'Restart=on-failure', 'RestartSec=2',
              'KillMode=mixed', 'TimeoutStopSec=%d' % int(spec['grace']), '', '[Install]', 'WantedBy=multi-user.target']
    return '\n'.join(lines) + '\n'


def program(spec):
    lines = ['; %s' % MANAGED,
             "; %s: %s under gunicorn, the runbook's one command line (sre.gunicorn_doctor)." % (spec['name'], spec['app']),
             '[program:%s]' % spec['name'], 'command=%s' % supervisord(sh(spec['run_script'])),
             'directory=%s' % supervisord(spec['chdir'])]
    lines += ['user=%s' % spec['user']] if spec['user'] else []
    if spec['environment']:
        lines.append('environment=' + ','.join('%s=%s' % (name, supervisord_env(value))
                                               for name, value in sorted(spec['environment'].items())))
    lines += ['autostart=true', 'autorestart=true', 'startsecs=2', 'startretries=2', 'stopsignal=TERM',
              'stopwaitsecs=%d' % int(spec['grace']), 'stopasgroup=true', 'killasgroup=true', 'redirect_stderr=true',
              'stdout_logfile=%s' % supervisord(spec['console_log']), 'stdout_logfile_maxbytes=10MB',
              'stdout_logfile_backups=3']
    return '\n'.join(lines) + '\n'


def setpriv(run_as):
    """The standalone start script runs as root (it reads runner.env) and starts gunicorn as the service's user."""
    groups = '--clear-groups' if re.match('^[0-9]+$', '%s' % run_as['user']) else '--init-groups'
    return 'setpriv --reuid=%d --regid=%d %s -- ' % (int(run_as['uid']), int(run_as['gid']), groups)


def start_script(spec):
    standalone, user = spec['manager'] == 'standalone', spec['user']
    lines = ['#!/bin/sh', '# %s' % MANAGED,
             "# Starts %s: %s under gunicorn with the runbook's one command line" % (spec['name'], spec['app']),
             '# (%s runner, sre.gunicorn_doctor). $PORT comes from the environment at start.' % spec['manager']]
    if user:
        lines.append('# The service runs as %s:%s, as it was found, never as root.' % (user, spec['group']))
    lines.append('set -eu')
    if user:
        lines += ['HOME=%s USER=%s LOGNAME=%s' % (sh(spec['home']), sh(user), sh(user)), 'export HOME USER LOGNAME']
    lines.append('set -a')
    lines += ['. %s' % sh(spec['runner_env'])] if standalone else []
    for path in [spec['carried_env']] + ([spec['env_file']] if spec.get('env_file') else []):
        lines.append('[ ! -r %s ] || . %s' % (sh(path), sh(path)))
    lines += ['set +a', 'cd %s' % sh(spec['chdir'])]
    if standalone:
        lines.append('exec %s%s --daemon --pid %s --enable-stdio-inheritance >>%s 2>&1' % (
            setpriv(spec['run_as']) if user else '', command(spec), sh(spec['pidfile']), sh(spec['console_log'])))
    else:
        lines.append('exec %s' % command(spec))
    return '\n'.join(lines) + '\n'


def render(spec):
    """[(path, text, mode, group)] of the runner's files for spec['manager'], in the order they are written
    (group: the gid the file gets, or None to keep the one it has)."""
    manager = spec['manager']
    if manager == 'systemd':
        return [(spec['runner_env'], runner_env(spec), 0o640, None), (spec['unit'], unit(spec), 0o644, None)]
    if manager == 'supervisord':
        return [(spec['run_script'], start_script(spec), 0o750, spec.get('gid')),
                (spec['program'], program(spec), 0o644, None)]
    return [(spec['runner_env'], runner_env(spec), 0o640, None), (spec['run_script'], start_script(spec), 0o750, None)]
