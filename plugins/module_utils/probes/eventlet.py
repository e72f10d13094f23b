# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""eventlet layer: can the eventlet worker run here? (runbook section 4)"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


def collect(context):
    """-> facts of the eventlet layer, or None while it is not probed."""
    return None
