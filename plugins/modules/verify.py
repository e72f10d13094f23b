#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: verify
short_description: Wait until a Gunicorn app serves /healthz on $PORT, and stays up for a window
version_added: 0.2.0
description:
  - "Runbook steps 1.3 and 1.4 as one check - one gunicorn master of the app LISTENs on I(port), all its workers
    have booted, and C(GET I(healthz_path)) answers 200; then for I(window) seconds the same master and the same
    workers stay, C(/healthz) keeps answering 200 and the log shows no C(Handling signal: term), no worker boot
    or exit, no C(WORKER TIMEOUT)."
  - Watches the process table and the log often (every 0.1 s) and ends as soon as the service fails; bounded by
    I(timeout) for the service to come up. Each C(/healthz) request has 3 s in all (connect, headers, body), so a
    service that trickles its answer fails the request instead of holding the check. Logs are read only when they
    are regular files, a bounded tail at a time.
  - On failure, the message says what was seen and what the logs' current run says (the exception, gunicorn's
    C(Reason:), an C(Error:) line).
  - Never changes anything and never reports C(changed).
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
options:
  port:
    description: The platform's port.
    type: int
    required: true
  healthz_path:
    description: Health endpoint.
    type: str
    default: /healthz
  window:
    description: Seconds the service must stay up after the first 200.
    type: float
    default: 15
  timeout:
    description: Seconds the service may take to answer its first 200.
    type: float
    default: 60
  log_files:
    description: Logs of the service (gunicorn's error log, the runner's console log).
    type: list
    elements: path
    default: []
  worker_class:
    description: The worker class the master must run, when given.
    type: str
  socket:
    description:
      - The unix socket the app is bound to (C(-b unix:PATH)) behind a reverse proxy that holds I(port) - the
        master must accept on it, and C(/healthz) must answer 200 both over it and through the proxy on I(port).
    type: path
  backend_port:
    description:
      - The loopback port the app listens on (C(-b 127.0.0.1:N)) behind a reverse proxy that holds I(port) - the
        master must listen on it, and C(/healthz) must answer 200 both there and through the proxy on I(port).
      - Not with I(socket).
    type: int
    version_added: 0.3.0
extends_documentation_fragment:
  - sre.gunicorn_doctor.service
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
'''

EXAMPLES = r'''
- name: Verify the voice app is up and stable
  sre.gunicorn_doctor.verify:
    app: AgentLocator.main:app
    chdir: /srv/agentlocator
    port: 8123
    window: 15
    log_files: [/var/log/agentlocator/gunicorn.log]
'''

RETURN = r'''
master:
  description: The master that serves.
  returned: success
  type: int
workers:
  description: Its workers.
  returned: success
  type: list
  elements: int
listen:
  description: Where the master listens on the port, or its unix socket behind the proxy on the port.
  returned: success
  type: str
  sample: 0.0.0.0:8123
worker_class:
  description: The master's worker class.
  returned: success
  type: str
ready_after:
  description: Seconds until the first 200.
  returned: success
  type: float
samples:
  description: How many C(/healthz) requests answered 200.
  returned: success
  type: int
elapsed:
  description: Seconds the whole check took.
  returned: always
  type: float
why:
  description: What was seen when the service is not up or not stable.
  returned: failure
  type: str
evidence:
  description: Log lines of the current run that tell why.
  returned: failure
  type: list
  elements: str
'''

import time

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import processes
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import module_args, stability
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact

ARGUMENT_SPEC = dict(
    module_args.APP,
    port=dict(type='int', required=True),
    healthz_path=dict(type='str', default='/healthz'),
    window=dict(type='float', default=15),
    timeout=dict(type='float', default=60),
    log_files=dict(type='list', elements='path', default=[]),
    worker_class=dict(type='str'),
    socket=dict(type='path'),
    backend_port=dict(type='int'),
)


def main():
    module, psutil = module_args.new_module(ARGUMENT_SPEC, mutually_exclusive=[('socket', 'backend_port')])
    p = module.params
    started = time.time()
    try:
        result = stability.watch(psutil, p, processes.own_lineage(psutil))
    except stability.Unstable as e:
        # The evidence is log lines of the service: redacted here, before they leave the host.
        module_args.fail(module, '%s is not up and stable on port %d: %s' % (p['app'], p['port'], e.why), why=e.why,
                         kind=e.kind, evidence=e.evidence, elapsed=round(time.time() - started, 2))
    module.exit_json(changed=False, **redact(result))


if __name__ == '__main__':
    main()
