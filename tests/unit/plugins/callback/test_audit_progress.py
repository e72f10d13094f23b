"""plugins/callback/audit_progress.py: one line per finished host, each host once, the play's own failure not."""

import json
from types import SimpleNamespace

from ansible_collections.sre.gunicorn_doctor.plugins.callback.audit_progress import CallbackModule


def result(host, payload, role=None):
    """Stands for Ansible's TaskResult: the host, the task (its role) and the result dict."""
    task = SimpleNamespace(_role=None if role is None else SimpleNamespace(get_name=lambda: role))
    return SimpleNamespace(_host=SimpleNamespace(get_name=lambda: host), _task=task, _result=payload)


def test_a_line_per_finished_host_with_its_verdict(monkeypatch):
    callback = CallbackModule()
    lines = []
    monkeypatch.setattr(callback._display, "display", lambda msg, *a, **k: lines.append(msg))
    healthy = {"host": "web1", "verdict": "healthy", "failed_layer": None, "causes": [], "layers": []}
    down = {"host": "web2", "verdict": "down", "failed_layer": "listen", "layers": [],
            "causes": [{"id": "not_listening", "layer": "listen", "severity": "fail", "evidence": ["x"]}]}
    callback.v2_runner_on_ok(result("web1", {"facts": {"port": {}}}, "sre.gunicorn_doctor.diagnose"))   # the probe
    callback.v2_runner_on_ok(result("web1", {"report": healthy, "paths": []}, "sre.gunicorn_doctor.diagnose"))
    callback.v2_runner_on_unreachable(result("web6", {"msg": "ssh: connect to host web6 port 22: Connection refused"}))
    callback.v2_runner_on_failed(result("web7", {"msg": "Task failed: doctor_chdir='/x' is not a directory"},
                                        "sre.gunicorn_doctor.diagnose"))
    callback.v2_runner_on_ok(result("web8", {"facts_json": json.dumps({"port": {}})}, "sre.gunicorn_doctor.diagnose"))
    # audit.yml: the report only as the text of HOST.json
    callback.v2_runner_on_ok(result("web2", {"report_json": json.dumps(down)}, "sre.gunicorn_doctor.diagnose"))
    # the audit's last task fails the play on purpose: not a host's diagnosis
    callback.v2_runner_on_failed(result("web1", {"msg": "2 host(s) down or unreachable"}))
    callback.v2_runner_on_ok(result("web1", {"report": healthy}, "sre.gunicorn_doctor.diagnose"))      # counted once
    assert [line.split("] ", 1)[1].split() for line in lines] == [
        ["web1", "HEALTHY"],
        ["web6", "UNREACHABLE", "ssh:", "connect", "to", "host", "web6", "port", "22:", "Connection", "refused"],
        ["web7", "NOT", "DIAGNOSED", "doctor_chdir='/x'", "is", "not", "a", "directory"],
        ["web2", "DOWN", "listen", "not_listening"]]
    assert [line.split(" done")[0] for line in lines] == ["[   1", "[   2", "[   3", "[   4"]
