"""The six single-layer modules (<layer>_info) are generated from one template with one RETURN definition
(scripts/gen_layer_modules.py): a hand edit of one of them, or a template change not rendered, fails here."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
SCRIPT = ROOT / "scripts" / "gen_layer_modules.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gen_layer_modules", str(SCRIPT))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_layer_module_is_the_rendered_template():
    script = load_script()
    assert set(script.LAYERS) == {"port", "process", "listen", "healthz", "boot", "system"}
    for layer in script.LAYERS:
        path = script.module_path(layer)
        assert path.read_text(encoding="utf-8") == script.render(layer), (
            "%s drifted from scripts/gen_layer_modules.py: run .venv/bin/python scripts/gen_layer_modules.py" % path.name)


def test_check_mode_reports_a_drifted_module(tmp_path, monkeypatch, capsys):
    script = load_script()
    monkeypatch.setattr(script, "MODULES", tmp_path)
    monkeypatch.setattr(script, "ROOT", tmp_path)
    assert script.main([]) == 0                       # writes the six files into tmp_path
    assert script.main(["--check"]) == 0
    port = tmp_path / "port_info.py"
    port.write_text(port.read_text().replace("type: str", "type: int", 1))
    assert script.main(["--check"]) == 1
    assert "port_info.py" in capsys.readouterr().err


def test_every_layer_module_returns_the_same_documented_keys():
    script = load_script()
    returns = set()
    for layer in script.LAYERS:
        text = script.module_path(layer).read_text(encoding="utf-8")
        returns.add(text.split("RETURN = r'''", 1)[1].split("'''", 1)[0].replace("(%s)" % ", ".join(script.LAYERS[layer]["facts"]), "(FACTS)"))
    assert len(returns) == 1
