# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one atomic writer: env files and runner files on the targets, reports on the controller."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import tempfile


def write_atomically(path, text, mode, uid=None, gid=None):
    """Replace `path` with `text` (UTF-8): a temporary file beside it, with `mode` (and owner) from the first
    byte whatever the umask, flushed to disk, then renamed over `path` - a reader (a service starting, a
    dashboard, the next audit) sees the old file or the new one, never half of it, and a symlink at `path` is
    replaced, never followed. On any error no temporary file stays behind. Raises OSError."""
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(dir=directory or '.', prefix='.%s.' % name, suffix='.tmp')
    try:
        os.fchmod(fd, mode)
        if uid is not None:
            os.fchown(fd, uid, gid if gid is not None else -1)
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            fd = None
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
