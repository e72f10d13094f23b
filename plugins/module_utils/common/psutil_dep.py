# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""psutil, loaded once for every module that needs it, with the standard missing-library message."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import traceback

from ansible.module_utils.basic import missing_required_lib

try:
    import psutil
    PSUTIL_IMP_ERR = None
except ImportError:
    psutil = None
    PSUTIL_IMP_ERR = traceback.format_exc()


def require_psutil(module):
    """psutil, or the module fails with `missing_required_lib('psutil')` (only the modules that use it)."""
    if psutil is None:
        module.fail_json(msg=missing_required_lib('psutil'), exception=PSUTIL_IMP_ERR)
    return psutil
