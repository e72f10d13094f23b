"""plugins/action/fleet_report.py: which report a host gets from its host variables."""

import json
from pathlib import Path

import jsonschema

from ansible_collections.sre.gunicorn_doctor.plugins.action.fleet_report import ActionModule, host_report, plain

SCHEMA = json.loads((Path(__file__).resolve().parents[4] / "docs" / "report.schema.json").read_text())


class Tagged(str):
    """Stands for Ansible's tagged/unsafe string types."""


def test_the_diagnose_roles_report_is_used_as_is():
    report = {"host": "web1", "verdict": "healthy", "failed_layer": None, "causes": [], "layers": []}
    found, synthesized = host_report("web1", {"doctor_report": {"changed": False, "report": report, "paths": []}})
    assert found == report and not synthesized


def test_the_report_json_is_read_when_the_role_returns_only_it():
    """audit.yml's report task returns the report as the text of HOST.json only (report_json): one string to hand over."""
    report = {"host": "web1", "verdict": "down", "failed_layer": "listen", "causes": [], "layers": []}
    registered = {"changed": False, "report_json": Tagged(json.dumps(report, indent=2) + "\n"), "paths": []}
    found, synthesized = host_report("web1", {"doctor_report": registered})
    assert found == report and not synthesized


def test_unreachable_host():
    host_vars = {"doctor_report": {"skipped": True, "false_condition": "..."},
                 "__doctor_audit_error": {"kind": "unreachable",
                                          "msg": "Task failed: Failed to connect to the host via ssh: Connection refused"}}
    found, synthesized = host_report("web6", host_vars)
    assert synthesized and found["verdict"] == "unreachable" and found["failed_layer"] is None
    assert found["layers"][0]["checks"][0]["detail"] == "Failed to connect to the host via ssh: Connection refused"
    jsonschema.validate(found, SCHEMA)


def test_unreachable_host_from_the_registered_probe_alone():
    """audit.yml records nothing more for an unreachable host (a task per host less): its probe's result says it."""
    host_vars = {"__doctor_probe": {"unreachable": True, "changed": False,
                                    "msg": "Task failed: Failed to connect to the host via ssh: Connection refused"},
                 "doctor_report": {"skipped": True, "false_condition": "__doctor_probe is reachable"}}
    found, synthesized = host_report("web6", host_vars)
    assert synthesized and found["verdict"] == "unreachable" and found["error"]["kind"] == "unreachable"
    assert found["error"]["message"] == "Failed to connect to the host via ssh: Connection refused"
    jsonschema.validate(found, SCHEMA)


def test_probe_stopped_on_its_input():
    host_vars = {"__doctor_audit_error": {"kind": "failed", "stderr": "",
                                          "msg": "doctor_chdir='/srv/x' is not a directory on this host: set it to ..."}}
    found, synthesized = host_report("web7", host_vars)
    assert synthesized and found["verdict"] == "down" and found["error"]["kind"] == "not_deployed"
    jsonschema.validate(found, SCHEMA)


def test_module_failure_keeps_the_last_stderr_line():
    host_vars = {"__doctor_audit_error": {"kind": "failed", "msg": "MODULE FAILURE\nSee stdout/stderr for the exact error",
                                          "stderr": "Traceback...\nModuleNotFoundError: No module named 'psutil'\n"}}
    found = host_report("web8", host_vars)[0]
    assert found["error"]["kind"] == "psutil_missing"
    assert found["error"]["message"].endswith("No module named 'psutil'")


def test_a_host_with_nothing_recorded_is_not_dropped():
    found, synthesized = host_report("web9", None)
    assert synthesized and found["verdict"] == "down" and "no diagnosis was recorded" in found["error"]["message"]


def test_plain_drops_wrapper_types():
    value = plain({Tagged("a"): [Tagged("x"), True, 3, 1.5, None, {"b": Tagged("y")}]})
    assert json.dumps(value) == '{"a": ["x", true, 3, 1.5, null, {"b": "y"}]}'
    assert value["a"][0].__class__ is str      # the exact type, not a subclass


def test_the_probe_tasks_timeout_makes_an_unreachable_host():
    host_vars = {"__doctor_audit_error": {"kind": "timeout", "stderr": "",
                                          "msg": "no answer from the host within the task timeout (165 s): Task failed: "
                                                 "Timed out after 165 second(s)."}}
    found, synthesized = host_report("web5", host_vars)
    assert synthesized and found["verdict"] == "unreachable" and found["error"]["kind"] == "timeout"
    assert found["error"]["message"].startswith("no answer from the host within the task timeout (165 s)")
    jsonschema.validate(found, SCHEMA)


def test_retry_list_written_and_removed(tmp_path):
    path = ActionModule._write_retry_list(str(tmp_path), ["web2", "web6"])
    assert path == str(tmp_path / "audit.retry")
    assert (tmp_path / "audit.retry").read_text() == "web2\nweb6\n"
    assert ActionModule._write_retry_list(str(tmp_path), []) is None
    assert not (tmp_path / "audit.retry").exists()       # no stale list once every host passed
