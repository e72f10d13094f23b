# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""system layer: is the machine killing the app from outside? (runbook section 3.1)"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import resource
import subprocess
import tempfile

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import service_env

OOM_LINE = re.compile(r'(Out of memory: Killed process (?P<pid>\d+) \((?P<name>[^)]+)\)|oom-kill:.*task=(?P<task>[^,]+),pid=(?P<tpid>\d+))')


def mount_point(path):
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def disk_usage(path):
    """statvfs of the mount holding `path` (the only way to see a full disk gunicorn is silent about)."""
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    st = os.statvfs(probe or '/')
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    return {
        'path': path,
        'mount': mount_point(probe or '/'),
        'total_bytes': total,
        'free_bytes': free,
        'used_pct': round(100.0 * (total - free) / total, 1) if total else 0.0,
        'inodes_used_pct': round(100.0 * (st.f_files - st.f_favail) / st.f_files, 1) if st.f_files else 0.0,
    }


def kernel_oom_events(limit=20):
    """OOM-killer lines from the kernel ring buffer, when this user may read it."""
    try:
        out = subprocess.run(['dmesg'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=3, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = []
    for line in out.decode('utf-8', 'replace').splitlines():
        m = OOM_LINE.search(line)
        if m:
            found.append({'pid': int(m.group('pid') or m.group('tpid')), 'name': m.group('name') or m.group('task'),
                          'line': line.strip()[:240]})
    return found[-limit:]


def oom_events(kill_count):
    """kernel_oom_events(), unless /proc/vmstat counts no OOM kill since boot (every kill, a cgroup's too, counts
    there): then there is none to find, and the host is spared running dmesg and reading its whole ring buffer."""
    return [] if kill_count == 0 else kernel_oom_events()


def vmstat_oom_kills():
    text = service_env.read_text('/proc/vmstat') or ''
    m = re.search(r'^oom_kill (\d+)$', text, re.M)
    return int(m.group(1)) if m else None


def collect(psutil, paths, master_pids, table=None):
    """-> facts: disks of `paths`, open-file limits (masters' and ours), memory, OOM events. `table`: the process
    table (process.scan()) the largest processes are named from, read here when not given."""
    disks, seen = [], set()
    for path in list(paths) + [tempfile.gettempdir()]:
        if not path:
            continue
        usage = disk_usage(path)
        if usage['mount'] in seen:
            continue
        seen.add(usage['mount'])
        disks.append(usage)
    limits = []
    for pid in master_pids:
        text = service_env.read_text('/proc/%d/limits' % pid)
        if text:
            soft, hard = service_env.parse_limits(text).get('Max open files', (None, None))
            limits.append({'pid': pid, 'soft': soft, 'hard': hard})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    vm = psutil.virtual_memory()
    top = []
    if table is None:
        for proc in psutil.process_iter(['pid', 'name', 'memory_info']):
            mem = proc.info.get('memory_info')
            if mem is not None:
                top.append({'pid': proc.info['pid'], 'name': proc.info['name'], 'rss_bytes': mem.rss})
    else:
        top = [{'pid': i['pid'], 'name': i['name'], 'rss_bytes': i['rss_bytes']} for dummy, i in table
               if i.get('rss_bytes') is not None]
    top = sorted(top, key=lambda p: -p['rss_bytes'])[:5]
    kills = vmstat_oom_kills()
    return {
        'disks': disks,
        'nofile_masters': limits,
        'nofile_shell': {'soft': None if soft == resource.RLIM_INFINITY else soft,
                         'hard': None if hard == resource.RLIM_INFINITY else hard},
        'memory': {'total_bytes': vm.total, 'available_bytes': vm.available,
                   'available_pct': round(100.0 * vm.available / vm.total, 1) if vm.total else None,
                   'swap_used_pct': psutil.swap_memory().percent},
        'top_memory': top,
        'oom_kernel': oom_events(kills),
        'oom_kill_count': kills,
    }
