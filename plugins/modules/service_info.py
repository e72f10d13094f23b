#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: service_info
short_description: Which service manager runs a Gunicorn app, and its master
version_added: 0.2.0
description:
  - Resolves I(manager=auto) to what the host has - the runner that runs the app now when it is systemd,
    supervisord or a C(gunicorn --daemon) pidfile; else systemd when it is the init system; else a running
    supervisord whose config includes a directory; else a standalone pidfile runner.
  - Reports the service's master as its manager sees it (pidfile, C(supervisorctl status), C(systemctl show)),
    proven to be a gunicorn master of the app.
  - Decides who the service runs as (I(run_as)) - the user and group of the master its manager runs, or of the user
    its runner file names (a unit's C(User=)/C(Group=), a program's C(user=), the start script's C(setpriv)); of
    the two a non-root one wins; else another running master of the app; else root, as before. I(user) and
    I(group) override it, but a service found running as another user is never made root - that fails, as does a
    user who cannot run I(python) in I(chdir).
  - Fails, with the reason, when the manager is a supervisord that does not run as root or whose binary, config,
    program directory or supervisorctl another user can change - root does not write programs for it.
  - Read-only.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
options:
  manager:
    description: C(auto), or the manager to use.
    type: str
    choices: [auto, systemd, supervisord, standalone]
    default: auto
  env_file:
    description: Dotenv-style file of the service environment; its C(PORT) is returned.
    type: path
  user:
    description: The user the service is to run as (name or uid), instead of the one found; C(root) is refused for a
      service found running as another user.
    type: str
    version_added: 0.3.0
  group:
    description: The service's group (name or gid); default the group found, or the primary group of I(user).
    type: str
    version_added: 0.3.0
  unit_dir:
    description: Where the service's systemd unit is (its C(User=)/C(Group=) are read from C(NAME.service) and its drop-ins).
    type: path
    default: /etc/systemd/system
    version_added: 0.3.0
  program_dir:
    description: Where the service's supervisord program is; default the running supervisord's C([include]) directory.
    type: path
    version_added: 0.3.0
  start_script:
    description: The standalone runner's start script (its C(setpriv --reuid/--regid) is read).
    type: path
    version_added: 0.3.0
  python:
    description: The app's interpreter; a non-root service user must be able to run it.
    type: str
    version_added: 0.3.0
extends_documentation_fragment:
  - sre.gunicorn_doctor.service
  - sre.gunicorn_doctor.service.runner
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
'''

EXAMPLES = r'''
- name: Find the service manager of the voice app
  sre.gunicorn_doctor.service_info:
    app: AgentLocator.main:app
    chdir: /srv/agentlocator
    name: agentlocator
    pidfile: /var/lib/gunicorn-doctor/agentlocator/gunicorn.pid
  register: service
'''

RETURN = r'''
manager:
  description: The manager to use.
  returned: always
  type: str
  sample: supervisord
why:
  description: Why that manager.
  returned: always
  type: str
running:
  description: Whether the manager runs a live master of the app under I(name).
  returned: always
  type: bool
pid:
  description: That master's pid, or null.
  returned: always
  type: int
started:
  description: Start time (epoch seconds) of that master, or null.
  returned: always
  type: float
state:
  description: The manager's word for the service's state (C(RUNNING), C(STOPPED), C(ACTIVE), ...).
  returned: always
  type: str
worker_class:
  description: Worker class of that master (C(sync), C(eventlet), ...), or of the app's oldest master when the manager runs none.
  returned: always
  type: str
current_runner:
  description: Kind of runner of the app's oldest master (C(supervisord), C(systemd), C(standalone), C(detached), ...), or null.
  returned: always
  type: str
current_settings:
  description:
    - The effective settings of the master the service runs, for those stabilize's command keeps or overrides
      (C(settings), each with its C(sources) - C(command line), C(GUNICORN_CMD_ARGS), C(config file PATH:LINE),
      C(default)), the C(config_file) gunicorn loads, the settings it C(computed) and cannot know, C(problems),
      whether C(GUNICORN_CMD_ARGS) is set (C(cmd_args)) and how many listening sockets a service manager passed it
      (C(socket_activated), systemd socket activation; 0 without). Null when no master runs.
  returned: always
  type: dict
env_file_port:
  description: The raw C(PORT) value of I(env_file), or null when it has none.
  returned: always
  type: str
env_file_cmd_args:
  description: Whether I(env_file) sets C(GUNICORN_CMD_ARGS) (the runner then keeps it).
  returned: always
  type: bool
supervisorctl:
  description: supervisorctl found for the running supervisord.
  returned: always
  type: str
supervisord_conf:
  description: supervisord's config file.
  returned: always
  type: str
supervisord_conf_dir:
  description: The directory its C([include]) section reads program files from.
  returned: always
  type: str
systemd_booted:
  description: Whether systemd is the init system.
  returned: always
  type: bool
runner_file:
  description: The service's runner file for the manager (unit, program file or start script).
  returned: success
  type: str
  version_added: 0.3.0
run_as:
  description:
    - Who the runner is to run the service as - C(user), C(group), C(uid), C(gid), C(home), C(source) - or null for
      root (no user directive is rendered, as before).
  returned: success
  type: dict
  sample: {user: www-data, group: www-data, uid: 33, gid: 33, home: /var/www, source: master 4242}
  version_added: 0.3.0
found_user:
  description: The user the service was found running as (same keys as I(run_as)), or null when nothing says.
  returned: success
  type: dict
  version_added: 0.3.0
'''

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import module_args, service_found

ARGUMENT_SPEC = dict(module_args.APP, **module_args.RUNNER)
ARGUMENT_SPEC.update(
    manager=dict(type='str', default='auto', choices=['auto'] + module_args.MANAGERS),
    env_file=dict(type='path'),
    user=dict(type='str'),
    group=dict(type='str'),
    unit_dir=dict(type='path', default='/etc/systemd/system'),
    program_dir=dict(type='path'),
    start_script=dict(type='path'),
    python=dict(type='str'),
)


def main():
    module, psutil = module_args.new_module(ARGUMENT_SPEC)
    try:
        result = service_found.find(psutil, module.params, module.run_command)
    except service_found.NotFound as e:
        module.fail_json(msg=str(e), changed=False, **e.result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
