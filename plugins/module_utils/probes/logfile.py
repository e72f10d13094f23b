# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gunicorn log (`doctor_log_file`): its recent events, timed, for the process and boot layers."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import os

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils import gunicorn

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
    if not os.path.exists(path):
        raise LogFileError('does not exist')
    if os.path.isdir(path):
        raise LogFileError('is a directory')
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except (IOError, OSError) as e:
        raise LogFileError(e.strerror or str(e))
    text = data.decode('utf-8', 'replace')
    if size > limit:
        text = text.split('\n', 1)[-1]  # drop the partial first line
    return text, size


def collect(path):
    """-> facts: size, mtime, events (with epoch times), tracebacks; None when no log is configured."""
    if not path:
        return None
    text, size = read_tail(path)
    scanned = gunicorn.scan_log(text.splitlines())
    events = [e for e in scanned['events'] if e['event'] not in COUNTED_ONLY][-EVENTS_KEPT:]
    for event in events:
        event['epoch'] = parse_time(event.get('time'))
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
    }
