# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of the diagnosis: facts -> verdict -> JSON and Markdown reports, no round trip."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.redact import redact
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.report_text import ladder, markdown
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.verdict import judge


def write_atomically(path, text):
    """Readers (a dashboard, the next audit) never see half a report."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path))
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('facts', 'host', 'report_dir'))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        facts = self._task.args.get('facts')
        host = self._task.args.get('host') or (task_vars or {}).get('inventory_hostname')
        report_dir = self._task.args.get('report_dir') or './doctor-reports'
        if not isinstance(facts, dict) or 'port' not in facts:
            raise AnsibleActionFail('facts must be the facts returned by sre.gunicorn_doctor.probe')
        report = redact(judge(facts, host))
        report_dir = os.path.abspath(os.path.expanduser(report_dir))
        paths = [os.path.join(report_dir, '%s.json' % host), os.path.join(report_dir, '%s.md' % host)]
        try:
            if not os.path.isdir(report_dir):
                os.makedirs(report_dir)
            write_atomically(paths[0], json.dumps(report, indent=2, sort_keys=False) + '\n')
            write_atomically(paths[1], markdown(report))
        except (IOError, OSError) as e:
            raise AnsibleActionFail('doctor_report_dir=%s cannot be written: %s' % (report_dir, to_native(e)))
        # Writing the report on the controller changes nothing on the host.
        result.update(changed=False, report=report, paths=paths, ladder=ladder(report, paths))
        return result
