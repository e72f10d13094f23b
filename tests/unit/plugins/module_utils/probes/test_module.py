"""plugins/module_utils/probes/module.py: the probe's facts as one JSON string (facts_format=json)."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.module import facts_as_json

COLLECTIONS = next(p for p in sys.path if os.path.isdir(os.path.join(p, "ansible_collections", "sre")))   # conftest.py's


def test_facts_as_json_are_the_facts_with_no_log_values_hidden_even_where_json_escapes_them():
    secret = 'p"ss\u00e9w\\rd'                                # JSON writes it as p\"ss\u00e9w\\rd
    facts = {"port": {"port": 8123}, "voice": {"url": "https://u:%s@voice.example.com" % secret, "n": [1, None, True]}}
    text = facts_as_json(SimpleNamespace(no_log_values={secret}), facts)
    assert secret not in json.loads(text)["voice"]["url"] and "********" in json.loads(text)["voice"]["url"]
    assert json.loads(text)["port"] == {"port": 8123} and json.loads(text)["voice"]["n"] == [1, None, True]
    assert list(json.loads(text)) == ["port", "voice"]                 # the probe's order, as the dict had it


def test_the_probe_module_imports_the_voice_layer_only_when_it_runs():
    """AnsiballZ compiles the collection's code on every run: a host with doctor_voice_checks off, or whose app does not
    answer, compiles no voice probe, WebSocket client or XML parser."""
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import module\n"
            "print(' '.join(sorted(m for m in ('ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.voice',"
            " 'websocket', 'xml.etree.ElementTree') if m in sys.modules)))" % COLLECTIONS)
    loaded = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, check=True).stdout.split()
    assert loaded == []


def run_module(name, args, tmp_path):
    """plugins/modules/NAME.py run as a host runs it, its arguments in a file -> its JSON result."""
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run([sys.executable, "-m", "ansible_collections.sre.gunicorn_doctor.plugins.modules." + name,
                           str(args_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=COLLECTIONS), timeout=120)
    return json.loads(done.stdout), done.stderr


def test_stabilize_probe_refuses_inputs_that_are_not_the_roles_in_one_line(tmp_path):
    args = {"app": "main:app", "chdir": str(tmp_path), "dry_import": False, "preload_boot": "never",
            "voice_checks": False, "stability_window": 0, "stabilize": {"inputs": {"port": ""}, "values": "nope"}}
    result, stderr = run_module("stabilize_probe", args, tmp_path)
    assert result.get("failed") and result["msg"].startswith("stabilize: not the stabilize role's inputs and values")
    assert "\n" not in result["msg"] and "Traceback" not in stderr


def test_the_probe_module_leaves_stabilize_to_its_action(tmp_path):
    args = {"app": "main:app", "chdir": str(tmp_path), "dry_import": False, "preload_boot": "never",
            "voice_checks": False, "stability_window": 0, "stabilize": {"inputs": {}, "values": {}}}
    result, dummy = run_module("probe", args, tmp_path)
    assert result.get("failed") and "stabilize_probe" in result["msg"]
    del args["stabilize"]
    result, dummy = run_module("probe", args, tmp_path)
    assert not result.get("failed") and "port" in result["facts"]
