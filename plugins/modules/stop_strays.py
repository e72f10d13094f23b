#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: stop_strays
short_description: Stop the earlier runs of a Gunicorn app, and nothing else
version_added: 0.2.0
description:
  - Finds the app's earlier runs (runbook step 1.1) with the same proof of belonging the diagnosis uses
    (M(sre.gunicorn_doctor.process_info)) - gunicorn masters and workers whose app spec B(and) directory are the
    app's, Flask dev servers and C(python main.py)-style runs of the app's module in I(chdir), workers orphaned
    by a dead master - and stops them - C(TERM), wait for them to exit up to I(grace) seconds,
    then C(KILL).
  - Matches a non-gunicorn run only by what its interpreter runs - C(-m) the app's module in I(chdir), the app
    module's own file as the script, or C(flask run) in I(chdir) - never by a C(.py) or a module name anywhere
    else in its command line (C(python -m pytest tests/test_main.py), C(python -m celery -A AgentLocator worker)
    and C(python tools/backup.py) are not the app).
  - Signals only processes whose cwd and uid can be read, that run as the service's user (I(user)) and that live
    in this module's own PID and mount namespaces (never a container's); the others are listed in RV(skipped)
    with the reason.
  - Never signals PID 1, this Ansible run (the module and its parents), sshd, init systems or process managers,
    or the service's own master and workers (I(keep_pids)); never another app, even one with the same app spec
    in another directory, and never a process that merely listens on I(port).
  - Each process is signalled only while its PID still names the process found by the scan (its start time is
    checked; with a pidfd on Linux 5.3+ the signal cannot reach a process that got the PID since).
  - Fails before signalling anything when a master of the app is run by another process manager
    (supervisord, systemd) that is not a second program (I(program)) or unit (I(systemd_unit)) it may disable -
    stopping it would only start a fight - or when a process that is not the app listens on I(port).
  - In check mode, lists what would be stopped and stops nothing.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
options:
  port:
    description: The port the service must listen on; a process of another app holding it is reported.
    type: int
  keep_pids:
    description: PIDs of the service's current master (kept with its workers), e.g. from M(sre.gunicorn_doctor.service_info).
    type: list
    elements: int
    default: []
  grace:
    description: Seconds to wait for the processes to exit after C(TERM) before C(KILL).
    type: float
    default: 10
  user:
    description:
      - The service's user, a name or a numeric uid; runs of the app by another user are not stopped.
      - Default - the user of the master in I(keep_pids), else the owner of I(chdir).
    type: str
  program:
    description:
      - The supervisord program stabilize manages (with I(supervisorctl) and I(supervisord_conf)). A master of the app
        that this supervisord runs under another program is a second runner - its program's file (holding that
        program alone, provably running I(app) in I(chdir)) is renamed to C(FILE.disabled-by-gunicorn-doctor) and
        C(supervisorctl update) stops it. Without it such a master stops the module before anything is signalled.
    type: str
  supervisorctl:
    description: supervisorctl of the supervisord that runs I(program).
    type: path
  supervisord_conf:
    description: Config of the supervisord that runs I(program) (C(supervisorctl -c)).
    type: path
  systemd_unit:
    description:
      - The systemd unit stabilize manages (C(NAME.service)), with I(systemd_unit_dir). Another unit of that directory
        that runs I(app) alone in I(chdir) (one C(ExecStart=) running gunicorn with the app, C(WorkingDirectory=)
        I(chdir), no C(ExecStartPre=) / C(ExecStartPost=) / C(ExecCondition=)) and is enabled or active is a second
        runner - disabled with C(systemctl disable --now UNIT) when the directory is this host's, with
        C(systemctl --root=ROOT disable UNIT) when it is C(ROOT/etc/systemd/system) of another root, where a running
        master of the app is stopped by PID like any earlier run.
      - A second unit that also runs something else, or when I(systemctl) is not found, stops the module before
        anything changes; the message names the unit and what to do.
    type: str
  systemd_unit_dir:
    description: The directory of I(systemd_unit).
    type: path
  systemctl:
    description: systemctl to use with I(systemd_unit); default - the one on C(PATH).
    type: path
  crontabs:
    description:
      - Crontab files (globs) to search for the line that starts a stopped shell loop (cron runs a line's command with
        C(sh -c)); each found is named in RV(crontab_lines) and RV(actions) with the remedy. Crontabs are never edited.
    type: list
    elements: str
    default: [/etc/crontab, /etc/cron.d/*, /var/spool/cron/crontabs/*, /var/spool/cron/*]
  run:
    description: An id of the caller's run (stabilize's stamp), returned as RV(run), so a rollback acts on this call's result only.
    type: str
  restore:
    description:
      - Rollback - the entries of an earlier call's RV(disabled_programs) and RV(disabled_units) marked C(done) to give
        back (the program's file renamed back and C(supervisorctl update); the unit enabled again, with C(--now) on
        this host). Nothing else is done; other options are ignored.
    type: list
    elements: dict
  archive:
    description:
      - Then archive the old logs, in the same call (runbook step 1.1 is both) - the options of
        M(sre.gunicorn_doctor.archive_logs), which this archiving is; its result is RV(logs). Unset - no logs are archived.
      - Only when nothing stopped the module first (a conflict, a process that survived C(KILL)).
    version_added: 0.3.0
extends_documentation_fragment:
  - sre.gunicorn_doctor.service
  - sre.gunicorn_doctor.log_archive.archive
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
seealso:
  - module: sre.gunicorn_doctor.process_info
'''

EXAMPLES = r'''
- name: Stop earlier runs of the voice app
  sre.gunicorn_doctor.stop_strays:
    app: AgentLocator.main:app
    chdir: /srv/agentlocator
    port: 8123
    keep_pids: [4242]
  register: strays
'''

RETURN = r'''
stopped:
  description: Each process chosen, with why it was chosen, the signals sent and how it ended (in check mode, what would be stopped).
  returned: always
  type: list
  elements: dict
  sample: [{pid: 5150, kind: dev_server, cmdline: "python3 -m AgentLocator.main", reason: "runs the app module AgentLocator.main",
            signals: [TERM], outcome: exited after TERM}]
skipped:
  description: Processes of the app that were not signalled, and why (protected, another user, another namespace, unreadable).
  returned: always
  type: list
  elements: dict
uid:
  description: The uid the app's runs must have to be stopped (the service's user).
  returned: always
  type: int
  sample: 33
conflicts:
  description: Processes that block stabilizing and are never stopped (another runner's master, a foreign port holder).
  returned: always
  type: list
  elements: dict
disabled_programs:
  description: Second supervisord programs of the app whose entries were disabled (I(program)) - pid, program, file, reason.
  returned: always
  type: list
  elements: dict
disabled_units:
  description: Second systemd units of the app that were disabled (I(systemd_unit)) - unit, file, root, state, reason, done.
  returned: always
  type: list
  elements: dict
crontab_lines:
  description: The crontab lines that start a stopped shell loop - file, line, pid of the loop. Never edited; remove them.
  returned: always
  type: list
  elements: dict
restored:
  description: With I(restore) - what was given back.
  returned: when I(restore) is given
  type: list
  elements: str
run:
  description: I(run), as given.
  returned: always
  type: str
actions:
  description: One record per chosen process for a report - action, target (pid and command), reason (and outcome).
  returned: always
  type: list
  elements: dict
summary:
  description: One line per chosen process - pid, command, reason.
  returned: always
  type: list
  elements: str
logs:
  description: With I(archive), what M(sre.gunicorn_doctor.archive_logs) returns - C(archived), C(held), C(refused), C(pruned), C(archive), C(actions).
  returned: when I(archive) is given
  type: dict
  version_added: 0.3.0
'''


import pwd

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import restart_runner
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import (
    clean_up, module_args, second_programs, second_units, service_control, strays)
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact


def actions(entries, check_mode):
    return [{'action': 'would stop process' if check_mode else 'stopped process',
             'target': '%d (%s)' % (e['pid'], (e.get('cmdline') or '')[:160]),
             'reason': e['reason'] + ('; %s (%s)' % (e['outcome'], '+'.join(e['signals']) or 'no signal')
                                      if e.get('outcome') else '')} for e in entries]


def second_programs_of(module, psutil, found):
    """Masters a second program of the managed supervisord runs: taken out of the conflicts, to be disabled."""
    p = module.params
    if not (p['program'] and p['supervisorctl'] and p['supervisord_conf']) or not found['conflicts']:
        return [], None
    ctl = clean_up.runner_ctl(module.run_command, [p['supervisorctl'], '-c', p['supervisord_conf']])
    chosen, found['conflicts'] = second_programs.choose(found['conflicts'], p['app'], p['chdir'],
                                                        p['supervisord_conf'], p['program'], ctl)
    # What a rollback needs to give each one back (restore).
    return [dict(e, supervisorctl=p['supervisorctl'], supervisord_conf=p['supervisord_conf']) for e in chosen], ctl


def second_units_of(module, found):
    """Second systemd units of the app beside the managed one: to be disabled (their masters out of the conflicts)."""
    p = module.params
    if not (p['systemd_unit'] and p['systemd_unit_dir']):
        return [], None
    units, found['conflicts'], ctl = clean_up.second_units_of(
        p['app'], p['chdir'], p['systemd_unit_dir'], p['systemd_unit'], found['conflicts'],
        p['systemctl'] or module.get_bin_path('systemctl'), module.run_command)
    return units, ctl


def runner_actions(programs, units, check_mode):
    would = 'would disable ' if check_mode else 'disabled '
    return [{'action': would + 'supervisord program', 'target': '%s (%s)' % (e['program'], e['file']),
             'reason': '%s; its master %d (%s)' % (e['reason'], e['pid'], (e.get('cmdline') or '')[:120])}
            for e in programs] + [{'action': would + 'systemd unit', 'target': '%s (%s)' % (e['unit'], e['file']),
                                   'reason': e['reason']} for e in units]


def cron_actions(lines):
    return [{'action': 'found the crontab line that starts it (not edited)', 'target': '%s: %s' % (c['file'], c['line']),
             'reason': 'cron starts the shell loop %d again from this line: remove the line (stabilize never edits '
                       'crontabs)' % c['pid']} for c in lines]


def summary(entries, crontab):
    return [strays.describe(e) for e in entries] + ['%(target)s: %(reason)s' % a for a in cron_actions(crontab)]


def user_uid(module, user):
    """`user` (a name or a uid) -> uid, None when not given; a one-line failure when there is no such user."""
    if user is None or user == '':
        return None
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        module.fail_json(msg='user=%s: no such user on this host; set it to the user the service runs as '
                             '(a name or a uid)' % user)


def restore(module, entries):
    """Rollback: give back the programs and units an earlier call disabled (entries marked done), then exit."""
    restored = []
    try:
        for entry in entries:
            if not entry.get('done') or module.check_mode:
                continue
            if entry.get('kind') == 'systemd_unit':
                restored.append(second_units.enable(entry, clean_up.runner_ctl(module.run_command, [entry['systemctl']])))
            else:
                ctl = clean_up.runner_ctl(module.run_command, [entry['supervisorctl'], '-c', entry['supervisord_conf']])
                restored.append(second_programs.enable(entry, ctl))
    except (OSError, KeyError, service_control.ServiceError) as e:
        module.fail_json(changed=bool(restored), restored=restored, msg='giving back what was disabled failed: %s' % e)
    module.exit_json(changed=bool(restored), restored=restored)


def disable_runners(module, psutil, programs, units, ctls, result):
    """Units first (a systemctl that refuses has then changed nothing), then programs; their masters must go."""
    try:
        survivors = second_units.disable(psutil, units, ctls[1], module.params['grace']) if units else []
        survivors += second_programs.disable(psutil, programs, ctls[0], module.params['grace'])
    except (OSError, service_control.ServiceError) as e:
        module_args.fail(module, 'disabling a second runner of the app failed: %s' % e,
                         **dict(result, changed=any(entry.get('done') for entry in programs + units)))
    if survivors:
        module_args.fail(module, 'the masters of the disabled programs or units are still alive: %s'
                         % ', '.join(map(str, survivors)), **dict(result, changed=True))


def stop_all(module, psutil, found):
    """Stop the chosen processes; a master killed after its grace period leaves the workers it had just forked:
    one more sweep. -> (stopped, survivors)"""
    p = module.params
    stopped, survivors = strays.stop(psutil, found['stop'], p['grace'])
    late = strays.choose(psutil, p['app'], p['chdir'], None, p['keep_pids'], uid=found['uid'])['stop']
    if late and not survivors:
        more, survivors = strays.stop(psutil, late, p['grace'])
        stopped += more
    return stopped, survivors


ARGUMENT_SPEC = dict(
    module_args.APP,
    port=dict(type='int'),
    keep_pids=dict(type='list', elements='int', default=[]),
    grace=dict(type='float', default=10),
    user=dict(type='str'),
    program=dict(type='str'),
    supervisorctl=dict(type='path'),
    supervisord_conf=dict(type='path'),
    systemd_unit=dict(type='str'),
    systemd_unit_dir=dict(type='path'),
    systemctl=dict(type='path'),
    crontabs=dict(type='list', elements='str', default=list(restart_runner.CRONTABS)),
    run=dict(type='str'),
    restore=dict(type='list', elements='dict'),
    archive=dict(type='dict', options=module_args.ARCHIVE),
)


def archive(module, psutil, result):
    """The old logs, now that the runs that wrote them are over (archive_logs in the same call)."""
    result['logs'] = module_args.archive_old(module, psutil, module.params['archive'], result, 'archive')
    result['changed'] = result['changed'] or result['logs'].pop('changed')


def stop_found(module, psutil, found, runners, result):
    """Disable the second programs and units, then stop the strays; updates `result`."""
    programs, units, ctls = runners
    disable_runners(module, psutil, programs, units, ctls, result)
    stopped, survivors = stop_all(module, psutil, found)
    crontab = result['crontab_lines']
    result.update(changed=True, stopped=stopped, actions=runner_actions(programs, units, False) + actions(stopped, False)
                  + cron_actions(crontab), summary=summary(programs + units + stopped, crontab))
    if survivors:
        module_args.fail(module, 'processes %s survived KILL' % ', '.join(str(s) for s in survivors), **result)


def main():
    module, psutil = module_args.new_module(ARGUMENT_SPEC)
    p = module.params
    if p['restore']:
        restore(module, p['restore'])
    uid = user_uid(module, p['user'])
    found = strays.choose(psutil, p['app'], p['chdir'], p['port'], p['keep_pids'], uid=uid)
    units, systemctl = second_units_of(module, found)
    programs, supervisorctl = second_programs_of(module, psutil, found)
    crontab = strays.crontab_origins(found['stop'], p['crontabs'])
    result = dict(changed=False, stopped=found['stop'], skipped=found['skipped'], conflicts=found['conflicts'],
                  uid=found['uid'], summary=summary(programs + units + found['stop'], crontab),
                  disabled_programs=programs, disabled_units=units, crontab_lines=crontab, run=p['run'],
                  actions=runner_actions(programs, units, module.check_mode) + actions(found['stop'], module.check_mode)
                  + cron_actions(crontab))
    if found['conflicts']:
        # Command lines of the host's processes (a database URL, a token): redacted before they leave it.
        module_args.fail(module, 'not stopping anything: ' + '; '.join(strays.describe(c) for c in found['conflicts']),
                         **result)
    if (found['stop'] or programs or units) and not module.check_mode:
        stop_found(module, psutil, found, (programs, units, (supervisorctl, systemctl)), result)
    else:
        result['changed'] = bool(found['stop'] or programs or units)
    if p['archive']:
        archive(module, psutil, result)
    module.exit_json(**redact(result))


if __name__ == '__main__':
    main()
