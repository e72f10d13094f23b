# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Move old logs out of the way (runbook 1.1) into compressed, timestamped archives.

"Old" means written by runs that are over: a log is archived only when no live process holds it
open (a log the running service writes to is current and stays; at each restart stabilize makes,
the service's logs are archived while it is stopped, so the new run starts a clean log).
A log leaves its place only after its compressed copy is written, synced and read back equal;
the newest `keep` archives are kept, older archive directories are deleted whole.

Logs live where the app's user can write, and this runs as root, so nothing here follows a link
someone else may have planted:
- directories are walked from / one component at a time (`open_dir`); a symlink on the way is
  followed only when it and its directory belong to root (or to us), never the app user's;
- a log is opened with O_NOFOLLOW and O_NONBLOCK and archived only when it is a regular file with
  one link: a symlink (to /etc/shadow, to /dev/zero), a FIFO or a hard link is refused, not read;
- archive files are created with O_CREAT|O_EXCL|O_NOFOLLOW inside the archive directory's fd, so a
  name planted in the archive is never written through; they are 0600: the log's own mode was meant
  for its owner, and a copy owned by root must not hand its lines (or write access) to anyone else.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import glob
import gzip
import hashlib
import os
import re
import stat

STAMP = re.compile(r'^\d{8}T\d{6}Z$')
CHUNK = 1 << 20
MAX_LINKS = 40
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0)
LOG_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, 'O_CLOEXEC', 0)
ARCHIVE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0)
ARCHIVE_MODE = 0o600


class Refused(OSError):
    """A log that is not archived because it is not what a log is (the message says what it is)."""


def _trusted(st):
    return st.st_uid in (0, os.geteuid())


def open_dir(path, create=False):
    """An fd on the directory `path` (absolute), walked from / one component at a time.

    A symlink on the way is followed only when it and the directory holding it belong to root or to
    us; one another user owns raises Refused. Missing directories are created 0750 when `create`.
    """
    if not os.path.isabs(path):
        path = os.path.join(os.getcwd(), path)
    parts = [p for p in path.split('/') if p not in ('', '.')]
    fd, links = os.open('/', DIR_FLAGS), 0
    try:
        while parts:
            name = parts.pop(0)
            try:
                nxt = os.open(name, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                _mkdir(name, fd)
                parts.insert(0, name)  # opened, without following, on the next round
                continue
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                links += 1
                target = _link_target(fd, name, path, links)
                parts[:0] = [p for p in target.split('/') if p not in ('', '.')]
                if target.startswith('/'):
                    os.close(fd)
                    fd = os.open('/', DIR_FLAGS)
                continue
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _mkdir(name, parent_fd):
    try:
        os.mkdir(name, 0o750, dir_fd=parent_fd)
    except FileExistsError:  # made meanwhile by someone else: opened without following it all the same
        pass


def _link_target(parent_fd, name, path, links):
    """Where the symlink `name` in `parent_fd` points, when it may be followed; else Refused."""
    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        raise Refused(errno.ENOTDIR, '%s: %s is not a directory' % (path, name))
    if links > MAX_LINKS:
        raise Refused(errno.ELOOP, '%s: too many symlinks' % path)
    if not (_trusted(st) and _trusted(os.fstat(parent_fd))):
        raise Refused(errno.ELOOP, '%s: %s is a symlink owned by uid %d (or in a directory root does not own): '
                                   'not followed' % (path, name, st.st_uid))
    return os.readlink(name, dir_fd=parent_fd)


def _refusal(st):
    """Why a log with this lstat/fstat is not archived ('' when it is a plain log)."""
    if stat.S_ISLNK(st.st_mode):
        return 'a symlink: not followed'
    if not stat.S_ISREG(st.st_mode):
        kind = 'a FIFO' if stat.S_ISFIFO(st.st_mode) else 'a device' if stat.S_ISCHR(st.st_mode) or \
            stat.S_ISBLK(st.st_mode) else 'a socket' if stat.S_ISSOCK(st.st_mode) else 'a directory'
        return 'not a regular file (%s): not read' % kind
    if st.st_nlink != 1:
        return 'a regular file with %d hard links (it may be another file too): not read' % st.st_nlink
    return ''


def candidates(paths, patterns, archive_dir):
    """Existing, non-empty logs among `paths` and the `patterns` globs (rotated siblings such as
    gunicorn.log.1), never inside the archive itself.
    -> (sorted [(path, lstat)], [{path, why}] of the ones refused)."""
    archive = os.path.realpath(archive_dir) + os.sep
    found, refused, seen = {}, [], set()
    for path in list(paths) + [m for pattern in patterns for m in sorted(glob.glob(pattern))]:
        if not path or path in seen:
            continue
        seen.add(path)
        try:
            st = os.lstat(path)
        except OSError:  # missing: nothing to archive
            continue
        why = _refusal(st)
        if why:
            refused.append({'path': path, 'why': why})
            continue
        real = os.path.realpath(path)
        if st.st_size == 0 or real.startswith(archive):
            continue
        found.setdefault(real, (path, st))
    return sorted(found.values()), refused


def open_files(psutil):
    """{real path: [pid, ...]} of every regular file a live process has open."""
    held = {}
    for proc in psutil.process_iter():
        try:
            files = proc.open_files()
        except Exception:  # gone, a zombie, or not ours to read
            continue
        for f in files:
            held.setdefault(os.path.realpath(f.path), []).append(proc.pid)
    return held


def _sha256(fileobj):
    digest = hashlib.sha256()
    for block in iter(lambda: fileobj.read(CHUNK), b''):
        digest.update(block)
    return digest.hexdigest()


def _create_archive(dir_fd, name):
    """(fd, name) of a new archive file: `name`, else `name.1`, `name.2`... - each created exclusively,
    never through a name that exists (a planted symlink included)."""
    n = 0
    while True:
        candidate = name if n == 0 else '%s.%d' % (name, n)
        try:
            return os.open(candidate, ARCHIVE_FLAGS, ARCHIVE_MODE, dir_fd=dir_fd), candidate
        except FileExistsError:
            n += 1


def _copy_verified(src, size, dest, name, mtime, already_gz):
    """Copy the first `size` bytes of `src` into `dest` (gzip-compressed unless `already_gz`), sync it,
    read it back. -> sha256 of the bytes; OSError when the copy differs or the log shrank."""
    digest, left = hashlib.sha256(), size
    sink = dest if already_gz else gzip.GzipFile(filename=name, mode='wb', fileobj=dest, mtime=int(mtime))
    while left > 0:
        block = src.read(min(CHUNK, left))
        if not block:
            raise OSError('%s shrank while it was archived' % name)
        digest.update(block)
        sink.write(block)
        left -= len(block)
    if not already_gz:
        sink.close()  # writes the gzip trailer; `dest` stays open
    dest.flush()
    os.fsync(dest.fileno())
    dest.seek(0)
    copy = _sha256(dest) if already_gz else _sha256(gzip.GzipFile(mode='rb', fileobj=dest))
    if copy != digest.hexdigest():
        raise OSError('the archive copy of %s does not match the original' % name)
    return copy


def archive_file(path, target_fd, target_dir):
    """Compress the log `path` into the directory open as `target_fd` (named `target_dir`), verify the
    copy, then remove the original. -> dict(path, archived_as, bytes, sha256).
    Raises Refused (nothing read) or OSError, and then leaves the original in place."""
    src_dir = open_dir(os.path.dirname(os.path.abspath(path)))
    try:
        name = os.path.basename(path)
        try:
            src_fd = os.open(name, LOG_FLAGS, dir_fd=src_dir)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise Refused(e.errno, 'a symlink: not followed')
            raise
        with os.fdopen(src_fd, 'rb') as src:
            st = os.fstat(src_fd)
            why = _refusal(st)
            if why:
                raise Refused(errno.EINVAL, why)
            result = _archive_open(src, st, path, target_fd, target_dir)
            _remove_if_same(src_dir, name, st)
        return result
    finally:
        os.close(src_dir)


def _archive_open(src, st, path, target_fd, target_dir):
    name = os.path.basename(path)
    already_gz = name.endswith('.gz')
    dest_fd, dest_name = _create_archive(target_fd, name if already_gz else name + '.gz')
    try:
        with os.fdopen(dest_fd, 'w+b') as dest:
            digest = _copy_verified(src, st.st_size, dest, name, st.st_mtime, already_gz)
            if os.fstat(src.fileno()).st_size != st.st_size:
                raise OSError('%s is still being written' % path)
            os.utime(dest.fileno(), (st.st_atime, st.st_mtime))
    except BaseException:
        os.unlink(dest_name, dir_fd=target_fd)
        raise
    return {'path': path, 'archived_as': os.path.join(target_dir, dest_name), 'bytes': st.st_size, 'sha256': digest}


def _remove_if_same(dir_fd, name, st):
    """Unlink `name` only while it is still the file that was archived (not one swapped in since)."""
    now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        raise OSError('%s was replaced while it was archived; both stay' % name)
    os.unlink(name, dir_fd=dir_fd)


def archives(archive_fd):
    """Archive directories (timestamp names, real directories - never a symlink) in `archive_fd`, oldest first."""
    found = []
    for name in os.listdir(archive_fd):
        if STAMP.match(name) and stat.S_ISDIR(os.stat(name, dir_fd=archive_fd, follow_symlinks=False).st_mode):
            found.append(name)
    return sorted(found)


def _remove_tree(parent_fd, name):
    """rm -r of the directory `name` in `parent_fd`, through fds only: a symlink inside is unlinked, never followed."""
    fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    try:
        for entry in os.listdir(fd):
            if stat.S_ISDIR(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                _remove_tree(fd, entry)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def prune(archive_dir, archive_fd, keep, dry_run=False, adding=None):
    """Delete archive directories beyond the newest `keep` (`adding`: one a dry run would create).
    -> the deleted paths."""
    old = archives(archive_fd) if archive_fd is not None else []
    if adding and adding not in old:
        old = sorted(old + [adding])
    old = old[:-keep] if keep > 0 else old
    deleted = [d for d in old if d != adding]
    if not dry_run:
        for name in deleted:
            _remove_tree(archive_fd, name)
    return [os.path.join(archive_dir, d) for d in deleted]


def plan(psutil, paths, patterns, archive_dir, current_since=0, holders=True):
    """-> (to_archive, held, refused): logs no live process holds open and the current run (started at
    `current_since`, 0: none runs) did not write, the ones still in use, and the ones that are not logs.
    holders=False: who holds a log the current run wrote is not asked (`held` then says only that): the open files of
    every process are read only when a log is older than the current run (clean_up.survey, on the idempotent run)."""
    to_archive, held = [], []
    found, refused = candidates(paths, patterns, archive_dir)
    current = [bool(current_since) and st.st_mtime >= current_since for dummy, st in found]
    held_by = open_files(psutil) if holders or not all(current) else {}
    for (path, st), written_now in zip(found, current):
        real = os.path.realpath(path)
        if real in held_by:
            held.append({'path': path, 'pids': sorted(held_by[real])})
        elif written_now:
            held.append({'path': path, 'pids': [], 'why': 'written by the current run'})
        else:
            to_archive.append((path, st))
    return to_archive, held, refused


def _open_archive_dir(archive_dir, create):
    try:
        return open_dir(archive_dir, create=create)
    except FileNotFoundError:
        if create:
            raise
        return None  # a dry run: nothing to prune yet


def run(psutil, paths, patterns, archive_dir, stamp, keep, dry_run=False, current_since=0):
    """Archive what is old, then prune. -> dict(archived, held, refused, pruned, archive)."""
    to_archive, held, refused = plan(psutil, paths, patterns, archive_dir, current_since)
    target = os.path.join(archive_dir, stamp)
    archived = []
    archive_fd = _open_archive_dir(archive_dir, create=not dry_run) if to_archive else None
    try:
        if dry_run:
            archived = [{'path': path, 'archived_as': os.path.join(target, os.path.basename(path) + '.gz'),
                         'bytes': st.st_size} for path, st in to_archive]
        elif to_archive:
            archived = _archive_all(to_archive, archive_fd, stamp, target, refused)
        pruned = prune(archive_dir, archive_fd, keep, dry_run, stamp) if archived else []
    finally:
        if archive_fd is not None:
            os.close(archive_fd)
    return {'archived': archived, 'held': held, 'refused': refused, 'pruned': pruned,
            'archive': target if archived else None}


def _archive_all(to_archive, archive_fd, stamp, target, refused):
    _mkdir(stamp, archive_fd)
    target_fd = os.open(stamp, DIR_FLAGS, dir_fd=archive_fd)
    archived = []
    try:
        for path, dummy in to_archive:
            try:
                archived.append(archive_file(path, target_fd, target))
            except Refused as e:  # swapped for a symlink or a FIFO since the scan: refused, not read
                refused.append({'path': path, 'why': e.strerror})
    finally:
        os.close(target_fd)
    return archived


def archive_old(psutil, p, check_mode, warn):
    """archive_logs' whole job for its options `p` (also stop_strays' `archive`): -> its result, with `actions` for
    a report; `warn(text)` is told each refused log. Raises ValueError (bad options) or OSError (the log stays)."""
    if not STAMP.match(p['stamp']):
        raise ValueError('stamp=%r must be a UTC time as YYYYMMDDTHHMMSSZ' % p['stamp'])
    if p['keep'] < 1:
        raise ValueError('keep=%d must be 1 or more: the archive just made is always kept' % p['keep'])
    done = run(psutil, p['paths'], p['patterns'], p['archive_dir'], p['stamp'], p['keep'], dry_run=check_mode,
               current_since=p.get('current_since') or 0)
    for r in done['refused']:
        warn('not archived: %s is %s' % (r['path'], r['why']))
    done['actions'] = [{'action': 'would archive log' if check_mode else 'archived log', 'target': a['path'],
                        'reason': 'old: no live process writes it and the current run did not write it; compressed copy %s'
                                  % a['archived_as']} for a in done['archived']]
    done['actions'] += [{'action': 'would delete archive' if check_mode else 'deleted archive', 'target': d,
                         'reason': 'beyond the newest %d archives' % p['keep']} for d in done['pruned']]
    done['changed'] = bool(done['archived'] or done['pruned'])
    return done
