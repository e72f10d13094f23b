#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: service_apply
short_description: Run a Gunicorn app with the runbook's one command line in its service manager, in one call
version_added: 0.3.0
description:
  - One pass of the C(gunicorn_service) role on the host - the service directory (the service's user writes only
    its C(run/)), the variables the old runner file gave the service carried into C(carried.env) (see
    M(sre.gunicorn_doctor.carry_env)), the runner's files rendered for the manager I(service) names - a systemd unit
    (checked with C(systemd-analyze verify) before it is written) and the runner's env file, a supervisord program
    and its start script, or the standalone runner's start script (C(gunicorn --daemon --pid FILE)) and env file.
  - Each file that differs is written atomically, after an owner-only copy of what it held went into
    C(SERVICE_DIR/backup). Then the service is restarted when a file changed or I(force_restart) (its logs archived
    while it is stopped, I(archive)), else started when it does not run.
  - Returns C(changed) only when something changed, and C(undo) - what I(state=rolled_back) needs to put each file
    back (with its mode and owner), remove the files the pass created and run the service as the pass found it.
  - Every value is quoted the runner's way; a service name other than letters, digits and C(_ . @ -), or a control
    character in any value, fails before anything is written.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
options:
  state:
    description:
      - C(applied) runs a pass; C(rolled_back) undoes the pass whose I(undo) it is given.
      - C(found) changes nothing and returns what runs the service now - the answer of
        M(sre.gunicorn_doctor.service_info) for the same options (the stabilize role decides from it; this module is
        built for the pass anyway, a second module would cost its own payload).
    type: str
    choices: [applied, rolled_back, found]
    default: applied
  undo:
    description: The C(undo) of the pass to roll back (required with I(state=rolled_back)).
    type: dict
  service:
    description:
      - M(sre.gunicorn_doctor.service_info)'s result for this service (the manager, its user, its state).
      - Unset - the pass finds it itself, as M(sre.gunicorn_doctor.service_info) would with I(manager), I(user),
        I(group) and the other options here (one call on the host instead of two).
    type: dict
  manager:
    description: Without I(service) - C(auto), or the manager to use (see M(sre.gunicorn_doctor.service_info)).
    type: str
    choices: [auto, systemd, supervisord, standalone]
    default: auto
  user:
    description:
      - Without I(service) - the user the service is to run as (name or uid), instead of the one found; C(root) is
        refused for a service found running as another user.
    type: str
  group:
    description: Without I(service) - the service's group (name or gid); default the group found, or the primary group of I(user).
    type: str
  app:
    description: WSGI target, C(MODULE:VARIABLE).
    type: str
  chdir:
    description: Directory gunicorn runs the app in.
    type: str
  python:
    description: The app's interpreter (C(-m gunicorn) runs in it).
    type: str
  name:
    description: Service name - systemd unit C(NAME.service), supervisord program C(NAME).
    type: str
  service_dir:
    description: Directory of the runner's files (start script, environment, backups; pidfile and default log in C(run/)).
    type: str
  worker_class:
    description: Gunicorn worker class.
    type: str
    choices: [sync, eventlet, gthread]
    default: sync
  workers:
    description: C(--workers).
    type: int
    default: 1
  timeout:
    description: C(--timeout); 0 - the runbook's value (sync 60, eventlet 120).
    type: int
    default: 0
  keepalive:
    description: C(--keep-alive); 0 - the runbook's value (sync 30, eventlet 75).
    type: int
    default: 0
  bind:
    description:
      - The service's own bind when it is a unix socket (C(unix:/PATH)) behind a proxy that holds C($PORT); kept in the
        canonical command. Anything else - C(-b 0.0.0.0:${PORT}).
    type: str
    default: ''
  config:
    description: The config file the service keeps (C(-c FILE)); the command line overrides only what it sets.
    type: str
    default: ''
  keep:
    description:
      - Settings the command line leaves to the service's config file or C(GUNICORN_CMD_ARGS), which set them
        (C(workers), C(timeout), C(keepalive)); the command line would win over both.
    type: list
    elements: str
    choices: [workers, timeout, keepalive]
    default: []
  log_file:
    description: C(--error-logfile); empty - SERVICE_DIR/run/gunicorn.log, or journald under systemd.
    type: str
    default: ""
  env_file:
    description: Dotenv-style file the runner reads at start, last (it wins over I(environment)).
    type: str
    default: ""
  environment:
    description: Environment the runner gives the service (PORT, EVENTLET_*).
    type: dict
    default: {}
  unit_dir:
    description: Where the systemd unit goes.
    type: path
    default: /etc/systemd/system
  program_dir:
    description: Where the supervisord program goes; empty - the running supervisord's C([include]) directory.
    type: str
    default: ""
  supervisorctl:
    description: supervisorctl; empty - the one I(service) found.
    type: str
    default: ""
  supervisord_conf:
    description: supervisord's config; empty - the one I(service) found.
    type: str
    default: ""
  start:
    description: Start and restart the service; false writes (and verifies) its files only.
    type: bool
    default: true
  force_restart:
    description: Restart even when no file of the service changed (the env file it reads did).
    type: bool
    default: false
  grace:
    description: Seconds a master may take to stop before C(KILL).
    type: float
    default: 10
  start_timeout:
    description: Seconds the manager may take to report a master after a start.
    type: float
    default: 30
  archive:
    description:
      - Where the service's logs (gunicorn's, the runner's console log, and their rotations) and any I(paths) and
        I(patterns) are archived while it is stopped for a restart; unset - not archived.
  clean:
    description:
      - With I(state=found) - also say what the clean-up of runbook step 1.1 (M(sre.gunicorn_doctor.stop_strays) with
        its I(archive), for the master found) would find to do now, changing nothing - RV(left_to_clean). The logs it
        would archive are those of I(archive). The stabilize role skips its clean-up when nothing is left.
    type: dict
    version_added: 0.3.0
    suboptions:
      port:
        description: The port whose holders that are not the app stop stabilize; unset - not looked at.
        type: int
attributes:
  check_mode:
    support: full
    details: Says which files would be written and whether the service would be restarted or started.
  diff_mode:
    support: full
    details: The new content of each file; a runner file's old content only when it sets none of the service's variables.
  platform:
    platforms: posix
extends_documentation_fragment:
  - sre.gunicorn_doctor.log_archive.archive
  - ansible.builtin.action_common_attributes
requirements:
  - psutil
'''

EXAMPLES = r'''
- name: Find what runs the voice app
  sre.gunicorn_doctor.service_info:
    app: AgentLocator.main:app
    chdir: /srv/agentlocator
    name: agentlocator
    pidfile: /var/lib/gunicorn-doctor/agentlocator/run/gunicorn.pid
  register: found

- name: Run it with the canonical command
  sre.gunicorn_doctor.service_apply:
    service: "{{ found }}"
    app: AgentLocator.main:app
    chdir: /srv/agentlocator
    python: /srv/agentlocator/.venv/bin/python
    name: agentlocator
    service_dir: /var/lib/gunicorn-doctor/agentlocator
    environment: {PORT: "8000"}
  register: pass_result

- name: Undo that pass
  sre.gunicorn_doctor.service_apply:
    state: rolled_back
    undo: "{{ pass_result.undo }}"
'''

RETURN = r'''
manager:
  description: The manager that runs the service.
  returned: state=applied
  type: str
command:
  description: The canonical command, shell form.
  returned: state=applied
  type: str
files:
  description: The runner's files for the manager.
  returned: state=applied
  type: list
  elements: str
changed_files:
  description: The files written (in check mode, that would be written).
  returned: state=applied
  type: list
  elements: str
log_files:
  description: The service's logs (gunicorn's error log, the runner's console log).
  returned: state=applied
  type: list
  elements: str
restarted:
  description: Whether the service was (would be) restarted.
  returned: state=applied
  type: bool
restart_actions:
  description: What the restart did, in order.
  returned: state=applied
  type: list
  elements: str
started:
  description: Whether the service was (would be) started because it did not run.
  returned: state=applied
  type: bool
pid:
  description: The master's pid after the pass (null in check mode when it would change).
  returned: state=applied
  type: int
previous_pid:
  description: The master's pid I(service) found.
  returned: state=applied
  type: int
run_as:
  description:
    - With I(state=applied) - who the service runs as, C(USER:GROUP (where that was found)) or C(root).
    - With I(state=found) - who the service runs as (a dict); the result then holds every return value of
      M(sre.gunicorn_doctor.service_info) (C(manager), C(running), C(pid), C(worker_class), C(current_settings), ...).
  returned: state=found or state=applied
  type: raw
carried:
  description: What M(sre.gunicorn_doctor.carry_env) returns (variable names, never values).
  returned: state=applied
  type: dict
undo:
  description: What I(state=rolled_back) needs (backups by file, each file's mode and owner before, how the service ran).
  returned: state=applied, also when the pass failed
  type: dict
left_to_clean:
  description:
    - With I(state=found) and I(clean) - C(port), the port looked at, and C(left), one C({kind, what}) for each thing
      the clean-up would do or stop at - C(stop) (a process), C(conflict), C(port_holder), C(second_unit), C(log)
      (to archive), C(refused_log). Null without I(archive), or when the host could not be read (the clean-up then
      runs and says why).
  returned: state=found, with I(clean)
  type: dict
  version_added: 0.3.0
  sample: {port: 8000, left: [{kind: stop, what: "5150 (python3 -m AgentLocator.main): runs the app module"}]}
done:
  description: Whether the rolled back pass had changed anything.
  returned: state=rolled_back
  type: bool
restored:
  description: Files put back.
  returned: state=rolled_back
  type: list
  elements: str
removed:
  description: Files the pass had created, removed.
  returned: state=rolled_back
  type: list
  elements: str
state:
  description: How the service was left - C(restarted) on its old files when the pass found it running, else C(stopped).
  returned: state=rolled_back
  type: str
'''

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import clean_up, module_args, service_pass
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact

REQUIRED_IF = [('state', 'applied', ('app', 'chdir', 'python', 'name', 'service_dir')),
               ('state', 'found', ('app', 'chdir', 'python', 'name', 'service_dir')),
               ('state', 'rolled_back', ('undo',))]


def main():
    module, psutil = module_args.new_module(module_args.SERVICE_APPLY, required_if=REQUIRED_IF)
    p = module.params
    try:
        if p['state'] == 'found':
            module.exit_json(changed=False, **clean_up.found(psutil, p, module.run_command, module.get_bin_path('systemctl'),
                                                             module.warn))
        if p['state'] == 'rolled_back':
            result = service_pass.roll_back(psutil, p['undo'], module.run_command, module.check_mode)
        else:
            result = service_pass.apply(psutil, p, module.run_command, module.check_mode, module._diff)
    except service_pass.PassError as e:
        # The message quotes the manager's output and the service's log: redacted before it leaves the host.
        module_args.fail_pass(module, e)
    for warning in result.pop('warnings', []):
        module.warn(warning)
    # The diff holds variable names only (a runner file's old content is hidden when it sets variables); the rest is
    # redacted like every result that quotes the service's logs.
    diff = result.pop('diff', None)
    module.exit_json(**dict(redact(result), **({'diff': diff} if diff else {})))


if __name__ == '__main__':
    main()
