"""plugins/module_utils/probes/module.py: the probe's facts as one JSON string (facts_format=json)."""

import json
from types import SimpleNamespace

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.module import facts_as_json


def test_facts_as_json_are_the_facts_with_no_log_values_hidden_even_where_json_escapes_them():
    secret = 'p"ss\u00e9w\\rd'                                # JSON writes it as p\"ss\u00e9w\\rd
    facts = {"port": {"port": 8123}, "voice": {"url": "https://u:%s@voice.example.com" % secret, "n": [1, None, True]}}
    text = facts_as_json(SimpleNamespace(no_log_values={secret}), facts)
    assert secret not in json.loads(text)["voice"]["url"] and "********" in json.loads(text)["voice"]["url"]
    assert json.loads(text)["port"] == {"port": 8123} and json.loads(text)["voice"]["n"] == [1, None, True]
    assert list(json.loads(text)) == ["port", "voice"]                 # the probe's order, as the dict had it
