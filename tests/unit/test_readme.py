"""The README is what users read first: its two commands, its variables tables and its module table must
match the collection (the roles' argument specs, plugins/modules, the playbooks' variables)."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def role_options(role):
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]["options"]


def table_rows(text):
    """`| \\`name\\` | meaning | default |` rows -> {name: default cell}."""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\| `([a-z_]+)` \|[^\n]*\| ([^|\n]*) \|$", text, re.M)}


def test_starts_with_the_two_commands_ci_runs():
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in first_block] == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_every_role_variable_is_in_the_variables_tables_with_its_default():
    rows = table_rows(README)
    for role in ("diagnose", "stabilize"):
        for name, spec in role_options(role).items():
            assert name in rows, "README's variables tables lack %s (roles/%s/meta/argument_specs.yml)" % (name, role)
            if spec.get("required"):
                assert rows[name] == "required", name
            elif isinstance(spec.get("default"), (int, float)) and not isinstance(spec.get("default"), bool):
                assert str(spec["default"]) in rows[name], "%s: README says %r, the role %r" % (name, rows[name], spec["default"])


def test_every_playbook_variable_is_documented():
    used = set()
    for path in list((ROOT / "playbooks").glob("*.yml")) + list((ROOT / "roles").glob("*/tasks/*.yml")):
        used |= set(re.findall(r"\b(doctor_[a-z_]+)", path.read_text()))
    # Results the roles register for the playbooks (not inputs).
    results = {"doctor_report", "doctor_audit", "doctor_audit_error", "doctor_probe"}
    missing = sorted(name for name in used - results if "`%s`" % name not in README)
    assert not missing, "README does not document %s" % missing


def test_every_module_is_in_the_module_table():
    section = README.split("## Modules and roles", 1)[1].split("\n## ", 1)[0]
    for module in sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py")):
        assert "`%s`" % module in section, "README's module table lacks %s" % module


def test_the_cause_page_is_linked():
    assert "(docs/causes.md)" in README and (ROOT / "docs" / "causes.md").is_file()
