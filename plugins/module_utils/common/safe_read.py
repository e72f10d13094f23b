# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way this collection reads a file of the host: a regular file, at most `limit` bytes.

A path on a broken or hostile host may name a FIFO (open() waits forever for a writer), a device
(/dev/zero never ends; opening some devices has side effects), a socket or a directory. Every read
here looks at the inode before opening it, opens without blocking and without following a final
symlink (`follow=True` resolves the path first, for paths where a symlink is normal: a log, a
unit), checks the opened inode again, and reads at most `limit` bytes: the head, or with `tail`
the last bytes. Nothing raises for what the host holds: the result carries a one-line `error`
that callers turn into a check detail or an input error.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import errno
import os
import stat

CHUNK = 1 << 16
SOURCE_MAX = 4 << 20   # one app source file the static scans parse; a larger one is not scanned
FLAGS = os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_NOCTTY', 0) | getattr(os, 'O_CLOEXEC', 0)
NOFOLLOW = getattr(os, 'O_NOFOLLOW', 0)

# data: bytes (read_bytes) or str (read_text), None when the file was not read; error: why not (one line);
# size: the file's size (0 for /proc files); truncated: more bytes exist than were read.
Read = collections.namedtuple('Read', 'data error size truncated')


def kind(mode):
    """What an inode that is not a regular file is, in words."""
    for test, name in ((stat.S_ISFIFO, 'a FIFO (named pipe)'), (stat.S_ISCHR, 'a character device'),
                       (stat.S_ISBLK, 'a block device'), (stat.S_ISSOCK, 'a socket'), (stat.S_ISDIR, 'a directory'),
                       (stat.S_ISLNK, 'a symbolic link')):
        if test(mode):
            return name
    return 'not a regular file'


def _refusal(path, target, mode):
    what = kind(mode)
    if target != os.path.abspath(path):
        return 'links to %s, %s, not a regular file' % (target, what)
    if stat.S_ISLNK(mode):
        return 'is a symbolic link (to %s), where a regular file is expected' % _link_target(path)
    return 'is %s, not a regular file' % what


def _link_target(path):
    try:
        return os.readlink(path)
    except OSError:
        return '?'


def _os_error(e):
    if e.errno == errno.ENOENT:
        return 'does not exist'
    if e.errno == errno.ELOOP:
        return 'is a symbolic link, where a regular file is expected'
    return e.strerror or str(e)


def open_fd(path, follow=False):
    """-> (fd of a regular file opened for reading, None) or (None, why not). The caller closes the fd."""
    try:
        target = os.path.realpath(path) if follow else path
        before = os.lstat(target)
    except (OSError, ValueError) as e:
        return None, _os_error(e) if isinstance(e, OSError) else str(e)
    if not stat.S_ISREG(before.st_mode):
        return None, _refusal(path, target, before.st_mode)   # never opened: a device's open() may act
    try:
        fd = os.open(target, FLAGS | NOFOLLOW)
    except OSError as e:
        return None, _os_error(e)
    after = os.fstat(fd)
    if not stat.S_ISREG(after.st_mode):   # replaced between the look and the open
        os.close(fd)
        return None, _refusal(path, target, after.st_mode)
    return fd, None


def open_regular(path, follow=False):
    """-> (binary file object, None) or (None, why not): for reads that stream a whole file (hashing)."""
    fd, error = open_fd(path, follow)
    return (os.fdopen(fd, 'rb'), None) if fd is not None else (None, error)


def refusal(path, follow=False):
    """Why `path` cannot be read as a regular file, or None when it can."""
    fd, error = open_fd(path, follow)
    if fd is not None:
        os.close(fd)
    return error


def read_bytes(path, limit, tail=False, follow=False, start=0):
    """At most `limit` bytes of the regular file `path`, from `start` (with `tail`: the last `limit` bytes
    after `start`). -> Read(data, error, size, truncated)."""
    fd, error = open_fd(path, follow)
    if fd is None:
        return Read(None, error, None, False)
    try:
        size = os.fstat(fd).st_size
        begin = max(start, size - limit) if tail and size > start + limit else start
        if begin:
            os.lseek(fd, begin, os.SEEK_SET)
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fd, min(CHUNK, left))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        more = left == 0 and bool(os.read(fd, 1))
        return Read(b''.join(chunks), None, size, begin > start or more)
    except OSError as e:
        return Read(None, _os_error(e), None, False)
    finally:
        os.close(fd)


def read_text(path, limit, tail=False, follow=False, start=0):
    """read_bytes, decoded as UTF-8 (undecodable bytes replaced)."""
    done = read_bytes(path, limit, tail, follow, start)
    return done._replace(data=done.data.decode('utf-8', 'replace')) if done.data is not None else done
