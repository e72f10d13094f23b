# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stopping processes by PID, safely: TERM, wait on the event (exit), KILL after a grace period.

Every signal the collection sends to a process it did not just fork goes through `signal_if_same`:
a PID is only a number, and the process scanned a moment ago may have exited and its number been
handed to another process since. The start time taken at the scan names the process; the signal
goes only to the process that still has it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import signal
import subprocess
import time

POLL = 0.05
# /proc start times count clock ticks (1/100 s): two processes with one PID differ by far more.
SAME_START = 0.001


def own_lineage(psutil):
    """Our PID and our parents' (the Ansible run): never an app process, never signalled."""
    me = psutil.Process()
    return set([me.pid] + [p.pid for p in me.parents()])


def is_within(path, root):
    """Whether `path` is `root` or below it (symlinks resolved); False when either is unknown."""
    if not path or not root:
        return False
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip('/') + '/')


def alive(psutil, proc):
    """`proc` (a psutil.Process) still runs: not gone, its PID not reused since (psutil compares the start
    time), not a zombie (without a reaping init one would look alive forever)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except Exception:  # psutil.NoSuchProcess
        return False


def same_process(psutil, pid, create_time):
    """Whether `pid` still names the process that started at `create_time` (False when it is gone)."""
    try:
        return abs(psutil.Process(pid).create_time() - create_time) < SAME_START
    except Exception:  # psutil.NoSuchProcess: gone
        return False


def _pidfd(pid):
    """A pidfd on `pid` (Linux 5.3+, Python 3.9+), or None where there is none. Raises ProcessLookupError."""
    if not hasattr(os, 'pidfd_open') or not hasattr(signal, 'pidfd_send_signal'):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError as e:
        if e.errno in (errno.ENOSYS, errno.EINVAL, errno.EPERM):
            return None  # an older kernel, or a seccomp filter: the start-time check alone
        raise


def signal_if_same(psutil, pid, create_time, sig):
    """Send `sig` to `pid` only while it is the process scanned with start time `create_time`.
    -> True when the signal was sent; False when that process is gone, its PID now names another
    process, or it may not be signalled by us.

    With a pidfd the signal goes to the very process whose start time was checked after the fd was
    opened: the fd pins that process, so a PID recycled in between cannot be hit. Without one, the
    start time is checked right before os.kill (a window of microseconds).
    """
    if not pid or pid <= 1 or create_time is None:
        return False
    try:
        fd = _pidfd(pid)
    except OSError:  # ProcessLookupError: gone
        return False
    try:
        if not same_process(psutil, pid, create_time):
            return False
        if fd is None:
            os.kill(pid, sig)
        else:
            signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:  # ProcessLookupError: exited meanwhile; PermissionError: not ours to signal
        return False
    finally:
        if fd is not None:
            os.close(fd)


def signal_proc(psutil, proc, sig):
    """signal_if_same for a psutil.Process, with the start time it took when it was made."""
    try:
        return signal_if_same(psutil, proc.pid, proc.create_time(), sig)
    except Exception:  # psutil.NoSuchProcess: gone before its start time was read
        return False


def namespaces(pid):
    """The PID and mount namespaces of `pid` as ((dev, inode), (dev, inode)), or None when unreadable."""
    found = []
    for kind in ('pid', 'mnt'):
        try:
            st = os.stat('/proc/%d/ns/%s' % (pid, kind))
        except OSError:
            return None
        found.append((st.st_dev, st.st_ino))
    return tuple(found)


def in_our_namespaces(pid):
    """Whether `pid` lives in this process' PID and mount namespaces (False when either cannot be read)."""
    theirs = namespaces(pid)
    return theirs is not None and theirs == namespaces(os.getpid())


def wait_gone(psutil, procs, timeout):
    """-> the psutil processes still alive after up to `timeout` seconds."""
    deadline = time.time() + timeout
    left = [p for p in procs if alive(psutil, p)]
    while left and time.time() < deadline:
        time.sleep(POLL)
        left = [p for p in left if alive(psutil, p)]
    return left


def stop_started(proc, psutil=None, grace=5.0):
    """Stop a subprocess.Popen we started and the children it had, by PID: TERM, then KILL."""
    children = []
    if psutil is not None:
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except Exception:  # psutil.NoSuchProcess: already gone
            children = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if psutil is not None:
        for child in wait_gone(psutil, children, grace):
            signal_proc(psutil, child, signal.SIGKILL)
