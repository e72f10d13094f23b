# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options the stabilize modules share, in one place (their documentation: doc_fragments/service.py), and
how each of them starts and fails."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.psutil_dep import require_psutil
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import logs_archive

MANAGERS = ['systemd', 'supervisord', 'standalone']

# The app a module works on (doc fragment sre.gunicorn_doctor.service).
APP = dict(
    app=dict(type='str', required=True),
    chdir=dict(type='path', required=True),
)

# The service in its manager (doc fragment sre.gunicorn_doctor.service.runner): service_info's and service_state's.
RUNNER = dict(
    name=dict(type='str', required=True),
    pidfile=dict(type='path'),
    supervisorctl=dict(type='path'),
    supervisord_conf=dict(type='path'),
)

# The logs to archive and where (doc fragment sre.gunicorn_doctor.log_archive): archive_logs' options, the
# `archive` of stop_strays, service_state and service_apply. A log the running service wrote since it started is current.
ARCHIVE = dict(
    paths=dict(type='list', elements='path', default=[]),
    patterns=dict(type='list', elements='str', default=[]),
    archive_dir=dict(type='path', required=True),
    stamp=dict(type='str', required=True),
    keep=dict(type='int', default=5),
    current_since=dict(type='float', default=0),
)


# service_apply's options (gunicorn_service's one call on the host); the probe's `stabilize` preview checks a pass
# with them too (stabilize/preview.py).
SERVICE_APPLY = dict(
    state=dict(type='str', default='applied', choices=['applied', 'rolled_back', 'found']),
    undo=dict(type='dict'),
    service=dict(type='dict'),
    manager=dict(type='str', default='auto', choices=['auto'] + MANAGERS),
    user=dict(type='str'),
    group=dict(type='str'),
    app=dict(type='str'),
    chdir=dict(type='str'),
    python=dict(type='str'),
    name=dict(type='str'),
    service_dir=dict(type='str'),
    worker_class=dict(type='str', default='sync', choices=['sync', 'eventlet', 'gthread']),
    workers=dict(type='int', default=1),
    timeout=dict(type='int', default=0),
    keepalive=dict(type='int', default=0),
    bind=dict(type='str', default=''),
    config=dict(type='str', default=''),
    keep=dict(type='list', elements='str', default=[], choices=['workers', 'timeout', 'keepalive']),
    log_file=dict(type='str', default=''),
    env_file=dict(type='str', default=''),
    environment=dict(type='dict', default={}),
    unit_dir=dict(type='path', default='/etc/systemd/system'),
    program_dir=dict(type='str', default=''),
    supervisorctl=dict(type='str', default=''),
    supervisord_conf=dict(type='str', default=''),
    start=dict(type='bool', default=True),
    force_restart=dict(type='bool', default=False),
    grace=dict(type='float', default=10),
    start_timeout=dict(type='float', default=30),
    clean=dict(type='dict', options=dict(port=dict(type='int'))),
    archive=dict(type='dict', options=ARCHIVE),
)


def new_module(*specs, **kwargs):
    """An AnsibleModule with the options of `specs` (check mode supported), and psutil. -> (module, psutil)."""
    argument_spec = {}
    for spec in specs:
        argument_spec.update(spec)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **kwargs)
    return module, require_psutil(module)


def fail(module, msg, **result):
    """End the module with `msg`; the result may quote the service's logs and command lines: redacted first."""
    module.fail_json(**redact(dict(result, msg=msg)))


def fail_pass(module, error):
    """End a module whose service pass failed (service_pass.PassError): its result says what was done until then. No
    `why` (why that manager): a failed task's `why` is read as the reason it failed (verify's)."""
    fail(module, str(error), **dict((key, value) for key, value in error.result.items() if key != 'why'))


def archive_old(module, psutil, options, result=None, option=''):
    """logs_archive.archive_old for a module that archives (archive_logs; stop_strays' `archive`, named by `option`):
    a bad option, or a log that could not be archived (it stays in place), ends the module with `result`."""
    try:
        return logs_archive.archive_old(psutil, options, module.check_mode, module.warn)
    except ValueError as e:
        fail(module, '%s%s' % (option + ': ' if option else '', e), **(result or {}))
    except (IOError, OSError) as e:
        fail(module, 'archiving stopped, the log stays in place: %s' % to_native(e), **(result or {}))
