# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # What most modules of the collection support: they run on a POSIX host, check mode does all but the
    # change, and they show no diff. Use with ansible.builtin.action_common_attributes.
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

    # Modules that edit env files, which hold the service's credentials: their diff names variables, never values.
    NAMES_ONLY_DIFF = r'''
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff shows variable names only, never values.
  platform:
    platforms: posix
'''
