"""plugins/action/probe.py: its `report` option (audit.yml's one task per host) takes the report action's options;
anything else is refused in one line before the host is contacted. The whole path - probe, report, an unreachable
host's report - runs for real in tests/integration/test_audit.py, test_audit_failures.py and test_awx.py."""

from types import SimpleNamespace

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.sre.gunicorn_doctor.plugins.action.probe import ActionModule


@pytest.mark.parametrize("report", ["doctor_", ["vars_prefix"], True])
def test_a_report_option_that_is_not_the_report_actions_options_is_refused(report):
    task = SimpleNamespace(args={"app": "AgentLocator.main:app", "chdir": "/srv/app", "report": report}, async_val=0,
                           check_mode=False, action="sre.gunicorn_doctor.probe")
    connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None))   # never used: refused before the host
    action = ActionModule(task, connection, SimpleNamespace(connection="ssh", remote_addr="10.0.0.5", check_mode=False),
                          None, None, None)
    with pytest.raises(AnsibleActionFail, match="report must be the options of sre.gunicorn_doctor.report"):
        action.run(task_vars={"inventory_hostname": "web1"})
