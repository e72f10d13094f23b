# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""voice layer: would calls work? TwiML, status callback, the Twilio WebSocket (runbook section 5)"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


def collect(context):
    """-> facts of the voice layer, or None while it is not probed."""
    return None
