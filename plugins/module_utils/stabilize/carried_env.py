# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The environment a service's runner file gives it, carried into one env file on the host when the runner file
is rewritten (carry_env, service_apply): the values never leave the host, a diff shows names only."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import files, service_user

# Set by the rewritten runner itself, whatever the worker class: never carried.
MANAGED = {'PORT', 'EVENTLET_HUB', 'EVENTLET_NO_GREENDNS'}
# In every file the gunicorn_service role renders.
MARKER = '(sre.gunicorn_doctor)'


class CarryError(Exception):
    """The environment cannot be carried; the message says what to fix."""


def wanted_access(group):
    """(mode, gid) of the carried file: owner-only, or readable by the service's group too."""
    if not group:
        return 0o600, os.getegid()
    try:
        return 0o640, service_user.account('0', group)['gid']
    except ValueError as e:
        raise CarryError('group: %s' % e)


def names_only(env):
    return ''.join('%s=<value kept on the host>\n' % name for name in sorted(env))


def carried_text(p, runner_text):
    """-> (text, old_text, old_env, carried, runner_env, env_files) for carry()'s parameters."""
    runner_env, env_files, problems = service_env.runner_file_environment(p['manager'], runner_text, p['name'])
    if problems:
        raise CarryError('cannot carry the environment of %s: %s; set those variables in doctor_env_file instead'
                         % (p['runner_file'], '; '.join(problems)))
    old_text = service_env.read_text(p['path'], follow=False)   # the carried file is ours: never via a symlink
    old_env = service_env.parse_dotenv(old_text or '')
    carried = dict(old_env, **runner_env)
    for name in set(p.get('exclude') or []) | MANAGED:
        carried.pop(name, None)
        runner_env.pop(name, None)
    try:
        text = service_env.format_env_file(carried)
    except ValueError as e:
        raise CarryError('cannot carry the environment of %s into %s: %s' % (p['runner_file'], p['path'], e))
    return text, old_text, old_env, carried, runner_env, env_files


def carry(p, check_mode=False, diff=False):
    """p: path, manager, runner_file, name, exclude, exclude_files, group. Writes p['path'] (unless check_mode)
    and returns carry_env's result. Raises CarryError, OSError."""
    runner_text = service_env.read_text(p['runner_file'])
    text, old_text, old_env, carried, runner_env, env_files = carried_text(p, runner_text)
    skip = set(os.path.normpath(f) for f in [p['path']] + list(p.get('exclude_files') or []))
    # Nothing to carry and no file yet: none is written (the runner reads it only when it exists).
    result = dict(changed=text != (old_text or ''), names=sorted(carried), from_runner_file=sorted(runner_env),
                  env_files=[f for f in env_files if os.path.normpath(f) not in skip],
                  # A file this collection did not render may set variables anywhere (a command line, another
                  # program): its old content is not to be shown.
                  foreign=runner_text is not None and MARKER not in runner_text)
    mode, gid = wanted_access(p.get('group'))
    if old_text is not None:
        st = os.stat(p['path'])
        result['changed'] = result['changed'] or (stat.S_IMODE(st.st_mode), st.st_gid) != (mode, gid)
    if result['changed'] and diff:
        result['diff'] = {'before_header': p['path'], 'after_header': p['path'],
                          'before': names_only(old_env), 'after': names_only(carried)}
    if result['changed'] and not check_mode:
        # Owner-only (or the service's group) from the first byte: the values may be credentials.
        files.write_atomically(p['path'], text, mode, os.geteuid(), gid)
    return result
