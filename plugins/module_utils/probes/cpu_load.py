# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How busy the host's CPUs are now: its run queue per CPU.

A loaded host answers late whatever the app does: the probe's bounds on an answer (a /healthz sample, a webhook,
the simulated call) grow with the run queue (scale), so a slow host is not read as a down or broken app. An idle
host keeps the idle bounds: there a late answer is the app's.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import safe_read

SCALE_MAX = 8.0   # on a slow host a bound grows at most this much


def cpus():
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run_queue():
    """The run queue: the larger of the 1-minute load average and the tasks runnable now (but this one). The
    average lags a load that has just begun (a fleet audit's first hosts), the count now catches it."""
    fields = (safe_read.read_text('/proc/loadavg', 4096, follow=True).data or '').split()
    try:
        return max(float(fields[0]), float(fields[3].split('/')[0]) - 1)
    except (IndexError, ValueError):
        return os.getloadavg()[0] if hasattr(os, 'getloadavg') else 0.0


def scale(load=None, ncpus=None):
    """How much longer than on an idle host an answer may take here now -> (factor from 1 to SCALE_MAX, why)."""
    ncpus = ncpus or cpus()
    load = run_queue() if load is None else load
    return min(SCALE_MAX, max(1.0, load / ncpus)), 'run queue %.1f on %d CPU(s)' % (load, ncpus)
