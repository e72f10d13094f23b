# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep secrets out of every output: private keys, tokens and passwords in any string of a result."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

SECRET_WORDS = r'(?:token|secret|password|passwd|api[_-]?key|auth|credential)'
SECRET_KEY = re.compile(r'(?i)^([\w.-]*' + SECRET_WORDS + r'[\w.-]*|private_key)$')
PATTERNS = (
    (re.compile(r'-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)', re.S),
     '<redacted private key>'),
    (re.compile(r'("private_key"\s*:\s*")(?:[^"\\]|\\.)*(")'), r'\1<redacted>\2'),
    # `Authorization: Bearer xyz`: the credential, not only the scheme word.
    (re.compile(r'(?i)\b((?:proxy-)?authorization["\']?\s*[:=]\s*["\']?)(?:(?:bearer|basic|token|digest)\s+)?[^\s,;"\']+'),
     r'\1<redacted>'),
    # NAME=value, NAME: value, "name": "value", NAME='value' for secret-looking names.
    (re.compile(r'(?i)\b([\w-]*' + SECRET_WORDS + r'[\w-]*)(["\']?\s*[=:]\s*)(["\']?)(?!<redacted)([^\s,;&"\']+)'),
     r'\1\2\3<redacted>'),
)


def redact(value):
    """A copy of value (str, list, dict, nested) with secrets replaced."""
    if isinstance(value, str):
        for pattern, replacement in PATTERNS:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, dict):
        return dict((k, '<redacted>' if isinstance(v, str) and v and isinstance(k, str) and SECRET_KEY.match(k)
                     else redact(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value
