#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: env_file
short_description: Set variables in a service's dotenv-style env file without showing any value
version_added: 0.3.0
description:
  - Sets C(KEY=VALUE) lines in a dotenv-style env file (the one C(sh) sources and systemd's C(EnvironmentFile=)
    reads) - every line that sets a variable of I(values) gets its new value (an C(export) prefix is kept), a
    variable no line sets is appended, every other line stays as it is.
  - The file is replaced atomically (a temporary file beside it, renamed over it) with its mode, owner and group.
  - Env files hold the service's credentials, so no value ever leaves the host - the diff and the result name the
    variables only (C(PORT=<changed>)), and I(values) is C(no_log).
  - A symlink is followed only to a regular file the service's user (I(service_user)) owns - a link the app's user
    planted to a file of root's (C(/etc/shadow)) is refused, and nothing is written.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
options:
  path:
    description: The env file. It must exist.
    type: path
    required: true
  values:
    description: Variables to set, name to value.
    type: dict
    required: true
  only_if_value:
    description:
      - Variables of I(values) to change only where the file sets them to this value now (for example
        C(EVENTLET_HUB=select), a hub that does not exist); they are never appended.
    type: dict
    default: {}
  service_user:
    description:
      - The user the service runs as (name or uid). When I(path) is a symlink, its target must be owned by this
        user; default root.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes.names_only_diff
'''

EXAMPLES = r'''
- name: Set PORT in the service's env file
  sre.gunicorn_doctor.env_file:
    path: /srv/agentlocator/.env
    values:
      PORT: "8000"
    service_user: www-data

- name: Replace the hub eventlet does not have
  sre.gunicorn_doctor.env_file:
    path: /srv/agentlocator/.env
    values:
      EVENTLET_HUB: selects
    only_if_value:
      EVENTLET_HUB: select
'''

RETURN = r'''
changed_names:
  description: Names of the variables set or appended (values stay on the host).
  returned: always
  type: list
  elements: str
  sample: [PORT]
written:
  description: The file written (the symlink's target when I(path) is a symlink), or null when nothing changed.
  returned: always
  type: str
'''

import errno
import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import files, service_user

LIMIT = 1 << 20  # an env file larger than this is not an env file


def resolve_target(path, owner):
    """The regular file to edit: `path`, or the target of a symlink at `path` when `owner` (an account) owns it.
    -> (target, error)."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return None, 'cannot read %s: %s' % (path, e.strerror)
    if not stat.S_ISLNK(st.st_mode):
        return path, None
    target = os.path.realpath(path)
    try:
        tst = os.stat(target)
    except OSError as e:
        return None, '%s is a symlink to %s, which cannot be read: %s' % (path, target, e.strerror)
    if tst.st_uid != owner['uid']:
        return None, ('%s is a symlink to %s, owned by %s, not by the service user %s: refused; make %s a regular '
                      'file' % (path, target, service_user.user_name(tst.st_uid), owner['user'], path))
    return target, None


def read_regular(path):
    """-> (text, stat) of a regular file, opened without following a symlink and without blocking on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, 'not a regular file')
        data = os.read(fd, LIMIT + 1)
    finally:
        os.close(fd)
    if len(data) > LIMIT:
        raise OSError(errno.EFBIG, 'larger than %d bytes' % LIMIT)
    return data.decode('utf-8', 'surrogateescape'), st


def names_diff(old_env, new_env, changes):
    """Before/after listings of the variable names: `NAME=<changed>`, never a value."""
    before = ''.join('%s=<%s>\n' % (n, 'value before' if n in changes else 'unchanged') for n in old_env)
    after = ''.join('%s=<%s>\n' % (n, changes.get(n, 'unchanged')) for n in new_env)
    return before, after


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            values=dict(type='dict', required=True, no_log=True),
            only_if_value=dict(type='dict', default={}),
            service_user=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    values = dict((str(k), str(v)) for k, v in p['values'].items())
    only_if = dict((str(k), str(v)) for k, v in p['only_if_value'].items())
    try:
        owner = service_user.account(p['service_user'] or '0')
    except ValueError as e:
        module.fail_json(msg='service_user: %s' % e)
    target, error = resolve_target(p['path'], owner)
    if error:
        module.fail_json(msg=error)
    try:
        text, st = read_regular(target)
        new_text, changes = service_env.set_env_values(text, values, only_if)
    except (IOError, OSError) as e:
        module.fail_json(msg='cannot edit %s: %s' % (target, to_native(e.strerror or e)))
    except ValueError as e:
        module.fail_json(msg='cannot set it in %s: %s' % (target, e))
    result = dict(changed=bool(changes), changed_names=sorted(changes), written=None)
    if changes and module._diff:
        before, after = names_diff(service_env.parse_dotenv(text), service_env.parse_dotenv(new_text), changes)
        result['diff'] = {'before_header': target, 'after_header': target, 'before': before, 'after': after}
    if changes and not module.check_mode:
        try:
            files.write_atomically(target, new_text, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        except (IOError, OSError) as e:
            module.fail_json(msg='cannot write %s: %s' % (target, to_native(e)))
        result['written'] = target
    module.exit_json(**result)


if __name__ == '__main__':
    main()
