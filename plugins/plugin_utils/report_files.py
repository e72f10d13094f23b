# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Report files on the controller, for every action that writes one (report, stabilize_report,
fleet_report): a file name from the host name that cannot leave the report directory, and one
atomic, private writer.

A host name that cannot be a plain file name (`/`, NUL, a control character, a leading `.` as in
`..` or `../evil`) is refused with a one-line error rather than rewritten: a rewritten name (`a/b`
-> `a_b`) could collide with another host's and overwrite its report."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re

from collections.abc import Mapping

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import files
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact

# Reports hold the hosts' evidence (command lines, log lines - redacted, yet not for everyone):
# owner read/write, group read, nothing for others. The directory, when created here, likewise.
REPORT_MODE = 0o640
DIR_MODE = 0o750
_UNSAFE = re.compile(u'[/\u0000-\u001f\u007f]')
MAX_NAME = 200   # + '.stabilize.json' and the temporary prefix stay under the 255-byte file name limit


class ReportPathError(ValueError):
    """A host name that cannot name a report file; the message says what to fix, in one line."""


def host_file_name(host):
    """The host name as a file name in the report directory, or ReportPathError."""
    if not isinstance(host, str) or not host or host.startswith('.') or _UNSAFE.search(host) \
            or len(host.encode('utf-8', 'replace')) > MAX_NAME:
        raise ReportPathError(
            'inventory host name %r cannot name a report file in doctor_report_dir (it is empty, starts with ".", '
            'or holds "/", NUL or a control character, or is longer than %d bytes): give the host an inventory name '
            'without them (its address goes in ansible_host)' % (host, MAX_NAME))
    return host


def host_report_path(report_dir, host, suffix):
    """REPORT_DIR/HOST<suffix>, e.g. ('/r', 'web1', '.json') -> /r/web1.json; refuses a host name that is no
    plain file name (so nothing is written outside report_dir)."""
    path = os.path.join(report_dir, host_file_name(host) + suffix)
    # Belt and braces: the name checks already rule this out.
    if os.path.dirname(os.path.abspath(path)) != os.path.abspath(report_dir):
        raise ReportPathError('report file %r would leave doctor_report_dir %r' % (path, report_dir))
    return path


def report_dir_path(report_dir):
    """The absolute report directory (created owner/group-only when missing)."""
    report_dir = os.path.abspath(os.path.expanduser(report_dir or './doctor-reports'))
    if not os.path.isdir(report_dir):
        os.makedirs(report_dir, DIR_MODE)
    return report_dir


def write_private(path, text):
    """Write a report atomically with mode 0640 from the first byte (common/files.py)."""
    files.write_atomically(path, text, REPORT_MODE)


def write_stabilize_record(report_dir, host, record):
    """HOST.stabilize.json: the stabilize role's record, redacted (it holds verify's evidence, the strays' command
    lines, the service's result), written atomically -> (path, the record as written). ReportPathError for a host name
    that is no plain file name; IOError/OSError when the directory cannot be written."""
    record = redact(plain(record))
    path = host_report_path(report_dir_path(report_dir), host, '.stabilize.json')
    write_private(path, json.dumps(record, indent=4, sort_keys=True) + '\n')
    return path, record


def plain(value):
    """Ansible's tagged/unsafe wrappers -> plain JSON types."""
    if isinstance(value, Mapping):
        return dict((plain(k), plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value) if isinstance(value, str) else to_native(value)
