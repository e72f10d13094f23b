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
