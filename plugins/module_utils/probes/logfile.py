# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gunicorn log (`doctor_log_file`): its recent events, timed, for the process and boot layers."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import os

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn, restart_history
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import safe_read

TAIL_BYTES = 2 << 20  # the recent past is what matters; old megabytes only slow the probe
EVENTS_KEPT = 300
# Counted, not kept: a voice app logs MEDIA_TX for every 20 ms frame of every call (the doctor's own call
# adds 50), enough to push gunicorn's own events out of the last EVENTS_KEPT and to bloat the facts.
COUNTED_ONLY = ('media_tx',)


class LogFileError(Exception):
    """The log named by the user cannot be read: an input error, not a finding."""


def parse_time(text):
    """gunicorn's `2026-11-25 12:00:03 +0000` -> epoch seconds, or None."""
    if not text:
        return None
    try:
        return (datetime.datetime.strptime(text, '%Y-%m-%d %H:%M:%S %z')
                - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)).total_seconds()
    except ValueError:
        return None


def read_tail(path, limit=TAIL_BYTES):
    """The last `limit` bytes of the log -> (text, size). A log path given by the user may be a symlink (to a
    rotated or mounted file): followed, but it must end at a regular file (a FIFO or /dev/zero is refused)."""
    done = safe_read.read_text(path, limit, tail=True, follow=True)
    if done.data is None:
        raise LogFileError(done.error)
    text = done.data
    if done.truncated:
        text = text.split('\n', 1)[-1]  # drop the partial first line
    return text, done.size


def tail_lines(path, limit=TAIL_BYTES):
    """The lines of the log's last `limit` bytes; [] when there is no log or it cannot be read (a FIFO, a
    directory, a missing file)."""
    if not path:
        return []
    try:
        return read_tail(path, limit)[0].splitlines()
    except LogFileError:
        return []


def collect(path):
    """-> facts: size, mtime, events (with epoch times), tracebacks, the masters' generations (restart_history, from
    the whole tail: a busy log pushes old masters out of the kept events); None when no log is configured."""
    if not path:
        return None
    text, size = read_tail(path)
    scanned = gunicorn.scan_log(text.splitlines())
    for event in scanned['events']:
        event['epoch'] = parse_time(event.get('time'))
    events = [e for e in scanned['events'] if e['event'] not in COUNTED_ONLY][-EVENTS_KEPT:]
    counts = {}
    for event in scanned['events']:
        counts[event['event']] = counts.get(event['event'], 0) + 1
    return {
        'path': path,
        'size': size,
        'mtime': os.path.getmtime(path),
        'counts': counts,
        'events': events,
        'tracebacks': scanned['tracebacks'][-3:],
        'generations': restart_history.generations(scanned['events']),
    }
