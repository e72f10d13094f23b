# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who a service runs as (its master, its runner file, an override), whether a path root is about to trust
can be changed by another user, and running a command as a service's user instead of root."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import grp
import os
import pwd
import re
import shutil
import stat

# A user or group name systemd, supervisord and setpriv all accept, or a number.
NAME = re.compile(r'^([A-Za-z_][A-Za-z0-9_.-]*\$?|[0-9]+)$')
# What a command run as another user keeps of our environment (never SSH_AUTH_SOCK, SUDO_*, ANSIBLE_*).
KEPT_ENV = re.compile(r'^(PATH|LANG|LC_[A-Z]+|TZ|PIP_[A-Z_]+|(http|https|no)_proxy|(HTTP|HTTPS|NO)_PROXY)$')


def account(user, group=None):
    """A user (name or uid) and optionally a group (name or gid; default the user's primary group) ->
    dict(user, group, uid, gid, home). Raises ValueError naming what is not valid or does not exist."""
    user, group = str(user), (None if group in (None, '') else str(group))
    for what, value in (('user', user), ('group', group)):
        if value is not None and not NAME.match(value):
            raise ValueError('%s %r is not a valid %s name' % (what, value, what))
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if not user.isdigit():
            raise ValueError('user %s does not exist on this host' % user)
        entry = None  # a uid without a passwd entry (containers): kept by number
    uid = int(user) if entry is None else entry.pw_uid
    if group is None:
        if entry is None:
            raise ValueError('uid %s has no passwd entry: give its group too' % user)
        gid = entry.pw_gid
    else:
        try:
            gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            if not group.isdigit():
                raise ValueError('group %s does not exist on this host' % group)
            gid = int(group)
    return {'user': entry.pw_name if entry else str(uid), 'group': group_name(gid), 'uid': uid, 'gid': gid,
            'home': entry.pw_dir if entry else '/'}


def group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def of_process(psutil, pid):
    """The real user and group of a live process -> account dict, or None when it cannot be read."""
    try:
        proc = psutil.Process(int(pid))
        uid, gid = proc.uids().real, proc.gids().real
    except Exception:  # gone, or not ours to read
        return None
    try:
        found = account(str(uid), str(gid))
    except ValueError:
        found = {'user': str(uid), 'group': str(gid), 'uid': uid, 'gid': gid, 'home': '/'}
    return found


def from_names(user, group):
    """An account from names a runner file gives (None when it names no user). A name this host does not know
    is kept as written, as not root: the runner file said the service is not root."""
    if not user:
        return None
    try:
        return account(user, group)
    except ValueError:
        return {'user': user, 'group': group or user, 'uid': None, 'gid': None, 'home': '/'}


def is_root(acct):
    return acct is None or acct['uid'] == 0 or (acct['uid'] is None and acct['user'] == 'root')


def decide(master, runner_file, stray, user=None, group=None):
    """Who the rendered runner runs as. `master`: the account of the master the manager runs; `runner_file`: the
    one the old unit/program/start script names; `stray`: the account of another master of the app (used only
    when neither of the first two is known). `user`/`group`: the override. Between the master and the runner
    file, a non-root one wins: the service is never made more privileged than it was configured.
    -> (run_as account or None for root, found account or None). Raises ValueError on a bad override and
    when the override would make a non-root service root."""
    known = [a for a in (master, runner_file) if a]
    found = next((a for a in known if not is_root(a)), known[0] if known else stray)
    if user in (None, ''):
        run_as = found
        if found and group not in (None, ''):
            run_as = account(found['user'] if found['uid'] is None else str(found['uid']), group)
    else:
        run_as = account(user, group)
    if found and not is_root(found) and is_root(run_as):
        raise ValueError('the service runs as %s (%s): making it root is refused - unset doctor_service_user or set '
                         'it to %s' % (found['user'], found.get('source', '?'), found['user']))
    return (None if is_root(run_as) else run_as), found


# --- paths root trusts ------------------------------------------------------------------------------------
def _chain(path):
    out = [path]
    while path != '/':
        path = os.path.dirname(path)
        out.append(path)
    return out


def unsafe_reason(path, trusted_uids=None):
    """Why another user could change `path` (it, a symlink on the way, or a directory above it is owned by
    someone else or writable by its group or others), or None when only root (and we) can. A sticky directory
    such as /tmp is fine: others cannot replace root's entries in it."""
    trusted = set(trusted_uids or (0, os.geteuid()))
    lexical = os.path.abspath(path)
    seen = []
    for candidate in _chain(lexical) + _chain(os.path.realpath(lexical)):
        if candidate not in seen:
            seen.append(candidate)
    for candidate in seen:
        try:
            st = os.lstat(candidate)
        except OSError as e:
            return 'cannot check %s: %s' % (candidate, e.strerror)
        if st.st_uid not in trusted:
            return '%s is owned by %s, not root' % (candidate, user_name(st.st_uid))
        if stat.S_ISLNK(st.st_mode) or not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            continue
        if not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
            return '%s is writable by %s (mode %04o)' % (
                candidate, 'others' if st.st_mode & stat.S_IWOTH else 'its group ' + group_name(st.st_gid),
                stat.S_IMODE(st.st_mode))
    return None


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return 'uid %d' % uid


def can_access(acct, path, bits):
    """Whether the account may open `path` with `bits` (os.R_OK | os.W_OK | os.X_OK), from the mode bits of
    the path and of every directory above it (ACLs are not read)."""
    if is_root(acct) or acct['uid'] is None:
        return True
    gids = set(_groups(acct))
    real = os.path.realpath(path)
    try:
        for directory in _chain(os.path.dirname(real)):
            if not _allowed(os.stat(directory), acct['uid'], gids, os.X_OK):
                return False
        return _allowed(os.stat(real), acct['uid'], gids, bits)
    except OSError:
        return False


def _allowed(st, uid, gids, bits):
    mode = st.st_mode
    granted = mode >> 6 if st.st_uid == uid else (mode >> 3 if st.st_gid in gids else mode)
    return granted & bits == bits


def _groups(acct):
    try:
        return os.getgrouplist(acct['user'], acct['gid'])
    except (KeyError, OSError, TypeError):
        return [acct['gid']]


def owner_of(path):
    """The account that owns `path` (its uid and gid)."""
    st = os.stat(path)
    try:
        return account(str(st.st_uid), str(st.st_gid))
    except ValueError:
        return {'user': str(st.st_uid), 'group': str(st.st_gid), 'uid': st.st_uid, 'gid': st.st_gid, 'home': '/'}


def venv_owner(python):
    """Who the interpreter and the pip of `python`'s venv are to run as -> (account or None for root, warning).
    When another user owns the venv, its bin/ or its site-packages, root running its code (pip is code in
    site-packages; a .pth file runs at every start) would give that user root: it runs as that owner instead.
    A root-owned venv others can still write gets a warning."""
    if not os.path.isabs(python):
        python = shutil.which(python) or python
    bin_dir = os.path.dirname(os.path.abspath(python))
    venv = os.path.dirname(bin_dir)
    paths = [bin_dir, os.path.abspath(python)]
    if os.path.isfile(os.path.join(venv, 'pyvenv.cfg')):
        paths = [venv] + paths + sorted(glob.glob(os.path.join(venv, 'lib*', 'python*', 'site-packages')))
    trusted = (0, os.geteuid())
    for path in paths:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_uid not in trusted:
            return owner_of(path), None
    unsafe = next((r for r in (unsafe_reason(p) for p in paths if os.path.lexists(p)) if r), None)
    return None, ('%s runs as root although %s' % (python, unsafe)) if unsafe else None


def run_kwargs(acct):
    """subprocess keyword arguments that run a command as `acct` (its uid, gid and groups) with its HOME and a
    small environment: never root's SSH agent, sudo or Ansible variables. {} for root."""
    if is_root(acct):
        return {}
    env = dict((k, v) for k, v in os.environ.items() if KEPT_ENV.match(k))
    env.setdefault('PATH', '/usr/local/bin:/usr/bin:/bin')
    env.update(HOME=acct['home'], USER=acct['user'], LOGNAME=acct['user'])
    return {'user': acct['uid'], 'group': acct['gid'], 'extra_groups': _groups(acct), 'env': env}
