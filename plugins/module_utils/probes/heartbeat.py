# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a gunicorn worker is still booting: read from its heartbeat file, without asking the worker anything.

The master creates each worker's heartbeat (an unlinked `wgunicorn-*` temporary file, gunicorn's WorkerTmp) right
before it forks the worker; the worker touches it (utime, or chmod in old versions: either changes its ctime) only
from its request loop, which it enters once the app is loaded. A file whose ctime is still its creation time belongs
to a worker that has not finished booting. gunicorn >= 20 does not kill such a worker at --timeout (its clock
compares time.monotonic() with the file's wall-clock creation time), so a slow import shows as a worker booting for
longer than the timeout, while the listen backlog takes connections nobody answers.

Read-only: a listing of /proc/PID/fd, readlink and stat of the heartbeat (never read, never opened).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat
import time

TMP_PREFIX = 'wgunicorn-'
FDS_MAX = 64          # the heartbeat is opened before the worker opens anything of the app's: among its first fds
FORK_SLACK = 1.5      # psutil's create time rests on the boot time in whole seconds: the file and it may differ that much


def booting_for(pid, create_time, now=None):
    """Seconds worker `pid` (started at `create_time`) has been booting: its heartbeat untouched since its fork;
    None when it has touched it (it serves), or when its fds cannot be read (another user's, gone, no heartbeat)."""
    now = time.time() if now is None else now
    fd_dir = '/proc/%d/fd' % pid
    try:
        fds = sorted(os.listdir(fd_dir), key=lambda n: int(n) if n.isdigit() else 0)[:FDS_MAX]
    except OSError:
        return None
    for name in fds:
        path = os.path.join(fd_dir, name)
        try:
            if TMP_PREFIX not in os.path.basename(os.readlink(path)):
                continue
            st = os.stat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        # Untouched: its last change is its creation, right before the fork (a utime since sets its mtime to the
        # monotonic clock, far from the wall-clock ctime; a chmod, in old versions, moves its ctime on).
        if abs(st.st_mtime - st.st_ctime) < 1 and st.st_ctime <= create_time + FORK_SLACK:
            return round(now - min(st.st_ctime, now), 1)
        return None
    return None
