"""plugins/plugin_utils/cause_docs.py and docs/causes.md: the cause page is generated from the cause
table the verdict uses, so a change to either without the other fails here."""

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils import cause_docs
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import verdict
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain.causes import CAUSES, LAYERS

UNIT_DIR = Path(__file__).resolve().parents[2]
ROOT = UNIT_DIR.parents[1]                         # the checkout
DOCS = ROOT / "docs"                              # the contract, the runbook and the report schema
SCHEMA = json.loads((DOCS / "report.schema.json").read_text())
JUDGES = Path(verdict.__file__).resolve().parent
PAGE = ROOT / "docs" / "causes.md"
SCRIPT = ROOT / "scripts" / "gen_cause_docs.py"
STALE = "docs/causes.md is stale: run .venv/bin/python scripts/gen_cause_docs.py"
REPORT_CAUSE_KEYS = {"id", "layer", "severity", "evidence", "remedy", "twilio_error", "runbook_step", "runbook_cause"}


def contract_ids():
    text = (DOCS / "contract.md").read_text()
    section = text.split("## Stable cause ids", 1)[1].strip().split("\n\n", 1)[0]
    return re.findall(r"[a-z][a-z0-9_]+", section)


JUDGE_HELPERS = {"voice": ("twiml.py",)}   # judges/voice.py hands the TwiML webhook to judges/twiml.py


def supplied_keys(filename):
    """Every keyword argument and string dict key in a judge module: a superset of the remedy values
    it passes (layer.cause(..., **values)), enough to catch a placeholder no judge fills."""
    tree = ast.parse((JUDGES / filename).read_text())
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            keys.update(k.arg for k in node.keywords if k.arg)
        elif isinstance(node, ast.Dict):
            keys.update(k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
    return keys


def host_value_keys():
    """The keys of the dict shared.host_values returns: the values every remedy gets."""
    tree = ast.parse((JUDGES / "shared.py").read_text())
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "host_values")
    returned = [n.value for n in ast.walk(func) if isinstance(n, ast.Return) and isinstance(n.value, ast.Dict)]
    assert len(returned) == 1
    return set(k.value for k in returned[0].keys)


def load_script():
    spec = importlib.util.spec_from_file_location("gen_cause_docs", str(SCRIPT))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the page is the table ------------------------------------------------------------------------------------------
def test_committed_page_is_the_rendered_table():
    assert PAGE.is_file(), STALE
    assert PAGE.read_text(encoding="utf-8") == cause_docs.render_markdown(), STALE


def test_every_cause_has_a_section_in_ladder_order():
    page = cause_docs.render_markdown()
    headings = re.findall(r"^### `([a-z0-9_]+)`$", page, re.M)
    assert sorted(headings) == sorted(CAUSES)
    assert headings == sorted(headings, key=lambda c: LAYERS.index(CAUSES[c]["layer"]))
    for cause_id in CAUSES:
        assert "[`%s`](#%s)" % (cause_id, cause_id) in page


def test_every_contract_id_is_in_the_table_and_on_the_page():
    page = cause_docs.render_markdown()
    pattern = re.compile(SCHEMA["properties"]["causes"]["items"]["properties"]["id"]["pattern"])
    for cause_id in contract_ids():
        assert pattern.match(cause_id)
        assert cause_id in CAUSES
        assert "### `%s`" % cause_id in page


def test_every_cause_says_what_it_means_how_it_is_seen_and_what_to_do():
    for cause_id, meta in CAUSES.items():
        for key in ("meaning", "evidence", "remedy"):
            assert isinstance(meta[key], str) and meta[key].strip(), (cause_id, key)


def test_remedy_placeholders_are_values_the_verdict_fills():
    host = host_value_keys()
    for cause_id, meta in CAUSES.items():
        known = host | supplied_keys(meta["layer"] + ".py")   # judges/<layer>.py judges it
        for helper in JUDGE_HELPERS.get(meta["layer"], ()):   # ... with the modules it splits off
            known |= supplied_keys(helper)
        unknown = set(cause_docs.placeholders(meta["remedy"])) - known
        assert not unknown, "%s: no judge fills %s" % (cause_id, sorted(unknown))


def test_placeholder_legend_is_the_verdicts_host_values():
    assert set(key for key, dummy in cause_docs.HOST_VALUES) == host_value_keys()


def test_readable_remedy_shows_placeholders_and_literal_braces():
    assert cause_docs.readable_remedy("bind -b {bound} (now {raw!r})") == "bind -b `<bound>` (now `<raw>`)"
    assert cause_docs.readable_remedy('{{"a": 1}} in `x {where}`') == '{"a": 1} in `x <where>`'
    assert cause_docs.readable_remedy("<Stream url=\"{url}\"/> __main__") == \
        '\\<Stream url="`<url>`"/> \\_\\_main\\_\\_'


# --- the table's new field stays out of reports ---------------------------------------------------------------------
def test_report_causes_keep_their_keys():
    layer = verdict.Layer("port", {"port": 8000})
    layer.cause("port_unset", ["PORT is set nowhere"])
    layer.cause("port_invalid", [])
    assert [set(c) for c in layer.causes] == [REPORT_CAUSE_KEYS, REPORT_CAUSE_KEYS]
    assert layer.causes[0]["evidence"] == ["PORT is set nowhere"]
    assert layer.causes[1]["evidence"] == [CAUSES["port_invalid"]["meaning"]]


# --- where the runbook is out of date -------------------------------------------------------------------------------
def test_runbook_corrections_are_stated_by_the_cause_table():
    page = cause_docs.render_markdown()
    for c in cause_docs.runbook_corrections():
        for cause_id in c["causes"]:
            meta = CAUSES[cause_id]
            assert c["stated"] in meta["meaning"] + " " + meta["remedy"], cause_id
        assert "says `%s`" % c["runbook"] in page


def test_runbook_corrections_quote_the_runbook():
    runbook = (DOCS / "runbook.md").read_text()
    for c in cause_docs.runbook_corrections():
        assert c["runbook"] in runbook


# --- scripts/gen_cause_docs.py --------------------------------------------------------------------------------------
def test_script_check_fails_on_a_stale_page_and_writes_a_fresh_one(tmp_path, capsys):
    script = load_script()
    out = tmp_path / "docs" / "causes.md"
    assert script.main(["--check"], output=out) == 1
    assert capsys.readouterr().err == STALE + "\n"
    assert script.main([], output=out) == 0
    assert out.read_text(encoding="utf-8") == cause_docs.render_markdown()
    assert script.main(["--check"], output=out) == 0
    out.write_text("old\n", encoding="utf-8")
    assert script.main(["--check"], output=out) == 1


def test_script_check_passes_on_the_checkout():
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=str(ROOT), capture_output=True, text=True,
                          check=False, timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
