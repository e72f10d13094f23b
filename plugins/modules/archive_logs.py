#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: archive_logs
short_description: Move old Gunicorn and app logs into compressed, timestamped archives
version_added: 0.2.0
description:
  - Runbook step 1.1 - move old log files out of the way so they do not mislead.
  - A log is old when no live process holds it open - everything in it was written by runs that are over.
    A log the running service writes to is current and stays where it is (stabilize archives the service's
    logs while it is stopped for a restart, with M(sre.gunicorn_doctor.service_state)).
  - Each old log is gzip-compressed into I(archive_dir)/I(stamp)/, synced and read back; only when the copy
    holds the same bytes is the original removed. Already compressed rotations (C(*.gz)) are moved as they are.
  - Keeps the newest I(keep) archive directories and deletes older ones.
  - Safe where the app's user can write the logs or the archive - a log is opened without following a symlink
    and without blocking, and only a regular file with one link is read; a symlink (to C(/etc/shadow), to
    C(/dev/zero)), a FIFO, a device or a hard link is refused and listed in RV(refused). Directories are walked
    one component at a time and a symlink on the way is followed only when root (or the Ansible user) owns it
    and its directory. Archive files are created exclusively (C(O_CREAT|O_EXCL|O_NOFOLLOW)), never through a
    name planted in the archive, with mode C(0600) - they may hold what only the log's owner could read.
  - Idempotent - a second run finds nothing old and changes nothing.
author: sre.gunicorn_doctor maintainers (!UNKNOWN)
extends_documentation_fragment:
  - sre.gunicorn_doctor.log_archive
  - ansible.builtin.action_common_attributes
  - sre.gunicorn_doctor.attributes
requirements:
  - psutil
'''

EXAMPLES = r'''
- name: Archive old logs of the voice app
  sre.gunicorn_doctor.archive_logs:
    paths: [/var/log/agentlocator/gunicorn.log, /srv/agentlocator/nohup.out]
    patterns: [/var/log/agentlocator/gunicorn.log.*]
    archive_dir: /var/lib/gunicorn-doctor/agentlocator/log-archive
    stamp: 20261125T120000Z
    keep: 5
'''

RETURN = r'''
archived:
  description: Each log moved, where its compressed copy is, its size and SHA-256 (of the original bytes).
  returned: always
  type: list
  elements: dict
  sample: [{path: /var/log/agentlocator/gunicorn.log, archived_as: /var/lib/gunicorn-doctor/agentlocator/log-archive/20261125T120000Z/gunicorn.log.gz,
            bytes: 10422, sha256: 3b1f...}]
held:
  description: Logs left in place because a live process writes to them (with those pids) or the current run wrote them.
  returned: always
  type: list
  elements: dict
refused:
  description:
    - Logs that are not archived because they are not plain log files (a symlink, a FIFO, a device, a hard link,
      a directory symlink another user owns), each with why; left untouched and unread.
  returned: always
  type: list
  elements: dict
  sample: [{path: /srv/agentlocator/nohup.out, why: "not a regular file (a FIFO): not read"}]
pruned:
  description: Archive directories deleted beyond the newest I(keep).
  returned: always
  type: list
  elements: str
archive:
  description: This run's archive directory, or null when nothing was archived.
  returned: always
  type: str
actions:
  description: One record per archived log for a report - action, target, reason.
  returned: always
  type: list
  elements: dict
'''

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import module_args

ARGUMENT_SPEC = module_args.ARCHIVE


def main():
    module, psutil = module_args.new_module(ARGUMENT_SPEC)
    module.exit_json(**module_args.archive_old(module, psutil, module.params))


if __name__ == '__main__':
    main()
