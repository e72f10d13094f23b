"""The project stands alone: a fresh clone has nothing beside it, so no tracked file may read, cite or
link to a path outside the repository (the contract, runbook, facts and report schema live in docs/)."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIBLING = "sha" + "red"   # spelled in two parts so this file does not match its own patterns
# A `../` path to the sibling directory in any text, and pathlib's `ROOT.parent / SIBLING` or `parents[2] / SIBLING`.
OUTSIDE = re.compile(r"\.\./%s\b|(parent|parents\[\d+\])\s*/\s*[\"']%s[\"']" % (SIBLING, SIBLING))
LINK = re.compile(r"\]\(([^)\s#]+)(#[^)]*)?\)")   # a Markdown link's target


def tracked_files():
    names = subprocess.run(["git", "ls-files", "-z"], cwd=str(ROOT), capture_output=True, check=True).stdout
    return [ROOT / name for name in names.decode().split("\0") if name]


def text_of(path):
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
        return ""


def test_no_tracked_file_refers_to_a_directory_beside_the_checkout():
    found = ["%s:%d: %s" % (path.relative_to(ROOT), number, line.strip())
             for path in tracked_files()
             for number, line in enumerate(text_of(path).splitlines(), 1) if OUTSIDE.search(line)]
    assert not found, "\n".join(found)


def test_the_pattern_catches_what_it_is_for():
    assert OUTSIDE.search("see ../%s/contract.md" % SIBLING)
    assert OUTSIDE.search('SCHEMA = ROOT.parent / "%s" / "report.schema.json"' % SIBLING)
    assert OUTSIDE.search("UNIT_DIR.parents[2] / '%s'" % SIBLING)
    assert not OUTSIDE.search("shared by the Markdown, the console and the page")


def test_every_relative_link_in_the_docs_resolves_inside_the_repository():
    broken = []
    for path in tracked_files():
        if path.suffix != ".md":
            continue
        for target, dummy_anchor in LINK.findall(text_of(path)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):   # https:, mailto: ...
                continue
            resolved = (path.parent / target).resolve()
            if ROOT not in resolved.parents or not resolved.exists():
                broken.append("%s -> %s" % (path.relative_to(ROOT), target))
    assert not broken, "\n".join(broken)


def test_the_report_schema_and_the_contract_ship_in_docs():
    for name in ("report.schema.json", "contract.md", "runbook.md", "facts.md", "causes.md"):
        assert (ROOT / "docs" / name).is_file(), name
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/report.schema.json" in readme
