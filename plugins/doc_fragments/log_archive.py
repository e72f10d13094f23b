# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import textwrap


class ModuleDocFragment(object):

    # Where and how old logs are archived (module_utils/stabilize/module_args.ARCHIVE): archive_logs' own options.
    # ARCHIVE below is derived from it: the same text as the suboptions of `archive`.
    DOCUMENTATION = r'''
options:
  paths:
    description: Log files to consider (missing and empty ones are ignored).
    type: list
    elements: path
    default: []
  patterns:
    description: Globs of more logs to consider, e.g. rotated siblings C(/var/log/app/gunicorn.log.*).
    type: list
    elements: str
    default: []
  archive_dir:
    description: Directory holding the archives (one subdirectory per run, named by I(stamp)).
    type: path
    required: true
  stamp:
    description: Name of this run's archive directory, UTC C(YYYYMMDDTHHMMSSZ).
    type: str
    required: true
  keep:
    description: How many archive directories to keep; older ones are deleted.
    type: int
    default: 5
  current_since:
    description:
      - Start time (epoch seconds) of the service's running master; a log written since then is part of the
        current run and stays, even when nothing holds it open (0 - no master runs).
    type: float
    default: 0
'''


# The same options as the suboptions of `archive`, for the modules that archive as part of their job (stop_strays,
# service_state, service_apply); each module says in its own `archive` description when it archives.
# Built from DOCUMENTATION so the two cannot drift: its option lines, indented two more levels, under `archive`.
# Set after the class: ansible-test's yamllint sanity test takes every assignment in the class body for a string literal.
ModuleDocFragment.ARCHIVE = '\noptions:\n  archive:\n    type: dict\n    suboptions:\n' + textwrap.indent(
    ModuleDocFragment.DOCUMENTATION.split('\noptions:\n', 1)[1], '    ')
