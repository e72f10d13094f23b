# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # The app a stabilize module works on (module_utils/stabilize/module_args.APP).
    DOCUMENTATION = r'''
options:
  app:
    description: WSGI target of the service, C(MODULE:VARIABLE).
    type: str
    required: true
  chdir:
    description: Directory gunicorn runs the app from; another directory is another app.
    type: path
    required: true
requirements:
  - psutil
'''

    # The service in its manager (module_utils/stabilize/module_args.RUNNER).
    RUNNER = r'''
options:
  name:
    description: Name of the service (systemd unit C(NAME.service), supervisord program C(NAME)).
    type: str
    required: true
  pidfile:
    description: Pidfile of the standalone runner.
    type: path
  supervisorctl:
    description: supervisorctl to use; default - the one beside the running supervisord, else from C(PATH).
    type: path
  supervisord_conf:
    description: supervisord's config file (C(supervisorctl -c)); default - the running supervisord's C(-c) file.
    type: path
'''
