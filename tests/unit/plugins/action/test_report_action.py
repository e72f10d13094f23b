"""plugins/action/report.py: the facts in as one JSON string, the report out as the text of HOST.json."""

import json
from types import SimpleNamespace

import jsonschema
import pytest
from ansible.errors import AnsibleActionFail

import test_verdict
from ansible_collections.sre.gunicorn_doctor.plugins.action.report import ActionModule
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.fleet import registered_report


def run_report(tmp_path, **args):
    """The report action as a task runs it, on the controller (no connection is used: no public URL)."""
    task = SimpleNamespace(args=dict(args, report_dir=str(tmp_path / "reports")), async_val=0, check_mode=False,
                           action="sre.gunicorn_doctor.report")
    action = ActionModule(task, SimpleNamespace(_shell=SimpleNamespace(tmpdir=None)),
                          SimpleNamespace(connection="ssh", remote_addr="10.0.0.5"), None, None)
    return action.run(task_vars={"inventory_hostname": "web1"})


def test_facts_as_json_give_the_same_report_and_file_as_the_dict(tmp_path):
    facts = test_verdict.healthy_facts(tmp_path)
    from_dict = run_report(tmp_path, facts=facts)
    written = (tmp_path / "reports" / "web1.json").read_text()
    from_json = run_report(tmp_path, facts_json=json.dumps(facts))
    assert (tmp_path / "reports" / "web1.json").read_text() == written        # byte for byte the same file
    assert from_json["report_json"] == from_dict["report_json"] == written    # and the same text returned
    assert from_json["report"] == from_dict["report"] == json.loads(written)
    jsonschema.validate(json.loads(written), test_verdict.SCHEMA)
    assert from_json["report"]["verdict"] == "healthy" and from_json["ladder"][0].startswith("web1: HEALTHY")


def test_the_report_only_as_json_for_a_fleet(tmp_path):
    facts = test_verdict.set_healthz(test_verdict.healthy_facts(tmp_path), [500, 500, 500])
    result = run_report(tmp_path, facts_json=json.dumps(facts), return_report=False, keep_fact=True)
    assert "report" not in result
    report = registered_report(result)          # what fleet_report and the audit_progress callback read
    assert report == json.loads((tmp_path / "reports" / "web1.json").read_text())
    assert report["verdict"] == result["ansible_facts"]["doctor_audit"]["verdict"] == "down"


def test_an_unreachable_hosts_report_is_returned_as_json_too(tmp_path):
    result = run_report(tmp_path, unreachable="Failed to connect to the host via ssh: Connection refused",
                        return_report=False)
    assert registered_report(result)["verdict"] == "unreachable"
    assert result["report_json"] == (tmp_path / "reports" / "web1.json").read_text()


@pytest.mark.parametrize("args, says", [
    ({"facts_json": "{not json"}, "facts_json is not JSON"),
    ({"facts_json": "[1, 2]"}, "facts must be the facts returned by sre.gunicorn_doctor.probe"),
    ({"facts_json": "{}", "facts": {"port": {}}}, "give one of them"),
    ({}, "facts must be the facts returned by sre.gunicorn_doctor.probe"),
])
def test_facts_that_are_not_the_probes_are_refused_in_one_line(tmp_path, args, says):
    with pytest.raises(AnsibleActionFail, match=says):
        run_report(tmp_path, **args)
    assert not (tmp_path / "reports" / "web1.json").exists()


def test_the_probes_registered_result_stands_for_its_facts(tmp_path):
    facts = test_verdict.healthy_facts(tmp_path)
    from_facts = run_report(tmp_path, facts_json=json.dumps(facts))
    preview = {"manager": "standalone"}
    registered = {"changed": False, "facts_json": json.dumps(facts), "stabilize_preview": preview}
    from_probe = run_report(tmp_path, probe=registered)
    assert from_probe["report_json"] == from_facts["report_json"]
    assert from_probe["stabilize_preview"] == preview


def test_an_unreachable_probe_result_writes_the_unreachable_report(tmp_path):
    registered = {"unreachable": True, "msg": "Failed to connect to the host via ssh: Connection timed out"}
    report = registered_report(run_report(tmp_path, probe=registered, return_report=False))
    assert report["verdict"] == "unreachable" and report["error"]["kind"] == "timeout"


def test_a_probe_result_that_is_not_one_is_refused_in_one_line(tmp_path):
    with pytest.raises(AnsibleActionFail, match="probe must be the registered result"):
        run_report(tmp_path, probe="facts")


def test_the_report_dir_from_its_variable(tmp_path):
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    task_vars = {"inventory_hostname": "web1", "doctor_report_dir": str(tmp_path / "from-vars"),
                 "doctor_validate_certs": False}
    task = SimpleNamespace(args={"facts_json": json.dumps(test_verdict.healthy_facts(tmp_path)),
                                 "vars_prefix": "doctor_"},
                           async_val=0, check_mode=False, action="sre.gunicorn_doctor.report")
    action = ActionModule(task, SimpleNamespace(_shell=SimpleNamespace(tmpdir=None)),
                          SimpleNamespace(connection="ssh", remote_addr="10.0.0.5"), None,
                          Templar(loader=DataLoader(), variables=task_vars), None)
    result = action.run(task_vars=task_vars)
    assert result["paths"] == [str(tmp_path / "from-vars" / "web1.json"), str(tmp_path / "from-vars" / "web1.md")]
