# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether the app's CPU quota holds it back now: its cgroup's throttled periods, counted twice.

A container's CPU limit (Kubernetes `limits.cpu`, `docker run --cpus`) or a unit's CPUQuota= starves an app on
an idle host: the host's run queue does not show it, the app's cgroup does. The kernel counts, in its cpu.stat,
the enforcement periods in which the cgroup had work (nr_periods) and those in which it ran out of quota
(nr_throttled), in cgroup v2 and v1 alike. Read before and after a stretch of the app's work, the share of
throttled periods says how much of that time the app waited for its quota.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import safe_read

CGROUP_ROOT = '/sys/fs/cgroup'
V1_DIRS = ('cpu,cpuacct', 'cpu', 'cpuacct,cpu')   # where distributions mount v1's cpu controller
READ_MAX = 64 << 10


def stat_path(pid, root=CGROUP_ROOT):
    """cpu.stat of the cgroup `pid` runs in -> path or None."""
    return cgroup_stat_path(safe_read.read_text('/proc/%d/cgroup' % pid, READ_MAX).data or '', root)


def cgroup_stat_path(proc_cgroup, root=CGROUP_ROOT):
    """cpu.stat of the cgroup a /proc/PID/cgroup text names: v1's cpu controller when it is mounted (a hybrid host
    has both, its cpu controller in v1), else v2's unified one -> path or None."""
    unified = None
    for line in proc_cgroup.splitlines():
        parts = line.split(':', 2)
        if len(parts) != 3 or '..' in parts[2].split('/'):
            continue
        relative = parts[2].strip().lstrip('/')
        if parts[0] == '0' and parts[1] == '':
            unified = '/'.join(p for p in (root, relative, 'cpu.stat') if p)
        elif 'cpu' in parts[1].split(','):
            for name in V1_DIRS:
                path = '/'.join(p for p in (root, name, relative, 'cpu.stat') if p)
                if safe_read.refusal(path) is None:
                    return path
    return unified


def sample(pid, root=CGROUP_ROOT):
    """-> dict(path, periods, throttled) of `pid`'s cgroup now; None when it has no readable cpu.stat."""
    path = stat_path(pid, root) if pid else None
    if path is None:
        return None
    counts = {}
    for line in (safe_read.read_text(path, READ_MAX).data or '').splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] in ('nr_periods', 'nr_throttled') and fields[1].isdigit():
            counts[fields[0]] = int(fields[1])
    if len(counts) != 2:
        return None   # no cpu controller there (a v2 cgroup without it has usage counts only)
    return {'path': path, 'periods': counts['nr_periods'], 'throttled': counts['nr_throttled']}


def throttled_share(before, after):
    """The share (0 to 1) of the periods between two samples of one cgroup in which its quota ran out; None when
    they cannot be compared (no sample, another cgroup) or the cgroup had no work in between."""
    if not before or not after or before['path'] != after['path']:
        return None
    periods = after['periods'] - before['periods']
    if periods <= 0:
        return None
    return min(1.0, max(0.0, (after['throttled'] - before['throttled']) / float(periods)))
