# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stopping processes we own, by PID: TERM, wait on the event (exit), KILL after a grace period."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal
import subprocess
import time

POLL = 0.05


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
    """A zombie has exited already; without a reaping init it would look alive forever."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except Exception:  # psutil.NoSuchProcess
        return False


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
            try:
                child.kill()  # psutil checks the create time: never a recycled PID
            except Exception:  # gone meanwhile
                pass
