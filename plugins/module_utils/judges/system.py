# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The system layer: disks, open-file limits, memory, OOM kills (facts['system'])."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import shared

FD_MINIMUM = 1024
DISK_FAIL_PCT, DISK_WARN_PCT = 99.0, 95.0
DISK_FAIL_FREE = 16 << 20   # under 16 MiB free a log write fails soon
MEM_FAIL_PCT, MEM_WARN_PCT = 3.0, 10.0


def judge(facts, layer):
    system = facts['system']
    for disk in system['disks']:
        detail = '%s (mount %s): %.1f%% used, %d MiB free, inodes %.1f%% used' % (
            disk['path'], disk['mount'], disk['used_pct'], disk['free_bytes'] >> 20, disk['inodes_used_pct'])
        full = disk['used_pct'] >= DISK_FAIL_PCT or disk['free_bytes'] < DISK_FAIL_FREE or disk['inodes_used_pct'] >= 99.5
        if full or disk['used_pct'] >= DISK_WARN_PCT:
            layer.check('disk %s' % disk['mount'], 'fail' if full else 'warn', detail)
            layer.cause('disk_full', [detail], severity='fail' if full else 'warn', extra=disk['mount'])
        else:
            layer.check('disk %s' % disk['mount'], 'pass', detail)
    for limit in system['nofile_masters']:
        detail = 'master %d: Max open files %s (soft) / %s (hard) in /proc/%d/limits' % (
            limit['pid'], limit['soft'], limit['hard'], limit['pid'])
        if limit['soft'] is not None and limit['soft'] < FD_MINIMUM:
            layer.check('open files (master %d)' % limit['pid'], 'fail', detail)
            layer.cause('fd_limit_low', [detail], extra='%s' % limit['soft'])
        else:
            layer.check('open files (master %d)' % limit['pid'], 'pass', detail)
    shell = system['nofile_shell']
    if shell['soft'] is not None and shell['soft'] < FD_MINIMUM:
        layer.check('open files (fresh shell)', 'warn', 'ulimit -n is %s' % shell['soft'])
        if not any(c['id'] == 'fd_limit_low' for c in layer.causes):
            layer.cause('fd_limit_low', ['ulimit -n is %s in a fresh shell: a restarted service inherits it'
                                         % shell['soft']], severity='warn', extra='%s' % shell['soft'])
    else:
        layer.check('open files (fresh shell)', 'pass', 'ulimit -n is %s' % (shell['soft'] or 'unlimited'))
    mem = system['memory']
    if mem['available_pct'] is None:
        layer.check('memory', 'skip', 'memory size unknown on this host')
        mem = None
    top = ', '.join('%s %d (%d MiB)' % (p['name'], p['pid'], p['rss_bytes'] >> 20) for p in system['top_memory'][:3])
    detail = mem and '%.1f%% of %d MiB available; largest: %s' % (mem['available_pct'], mem['total_bytes'] >> 20, top)
    if mem is None:
        pass
    elif mem['available_pct'] < MEM_WARN_PCT:
        severity = 'fail' if mem['available_pct'] < MEM_FAIL_PCT else 'warn'
        layer.check('memory', severity, detail)
        layer.cause('memory_pressure', [detail], severity=severity, extra=top)
    else:
        layer.check('memory', 'pass', detail)
    app_oom = [e for e in (system.get('oom_kernel') or []) if re.search(r'gunicorn|python', e['name'] or '')]
    sigkills = [e for e in shared.last_run_events(facts) if e['event'] == 'worker_sigkill']
    timed_out = set(e.get('worker') for e in shared.last_run_events(facts) if e['event'] == 'worker_timeout')
    unexplained = [e for e in sigkills if e.get('worker') not in timed_out]
    if app_oom or unexplained:
        evidence = [e['line'] for e in app_oom[-3:]] + [e['line'] for e in unexplained[-3:]]
        layer.check('no OOM kills', 'fail', evidence[0])
        layer.cause('oom_killed', evidence, severity='fail' if app_oom else 'warn', extra='dmesg / the gunicorn log')
    else:
        layer.check('no OOM kills', 'pass', 'kernel oom_kill counter %s; none of the app in the kernel log%s' % (
            system.get('oom_kill_count'), '' if system.get('oom_kernel') is not None else ' (dmesg not readable)'))
