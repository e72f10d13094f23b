"""Write docs/causes.md from the cause table (plugins/module_utils/domain/causes.py).

    .venv/bin/python scripts/gen_cause_docs.py           # (re)write docs/causes.md
    .venv/bin/python scripts/gen_cause_docs.py --check   # exit 1 when docs/causes.md is stale

The page is plugins/plugin_utils/cause_docs.render_markdown(); tests/unit compares the two as well.
"""

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]          # the checkout = the collection root
NAME = "docs/causes.md"
OUTPUT = ROOT / NAME
LINK = ROOT / ".collections" / "ansible_collections" / "sre" / "gunicorn_doctor"


def collections_dir():
    """A directory holding ansible_collections/sre/gunicorn_doctor -> this checkout, as tests/unit/conftest.py
    finds it: the checkout's own place when it is installed, bootstrap.sh's .collections, else a temporary link."""
    if ROOT.parent.name == "sre" and ROOT.parents[1].name == "ansible_collections" and ROOT.name == "gunicorn_doctor":
        return str(ROOT.parents[2])
    if LINK.is_dir() and LINK.resolve() == ROOT:
        return str(LINK.parents[2])
    tmp = Path(tempfile.mkdtemp(prefix="gunicorn_doctor_docs_"))
    atexit.register(shutil.rmtree, str(tmp), True)
    (tmp / "ansible_collections" / "sre").mkdir(parents=True)
    os.symlink(str(ROOT), str(tmp / "ansible_collections" / "sre" / "gunicorn_doctor"))
    return str(tmp)


def render():
    path = collections_dir()
    if path not in sys.path:
        sys.path.insert(0, path)
    from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.cause_docs import render_markdown
    return render_markdown()


def main(argv=None, output=OUTPUT):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/causes.md differs from the cause table")
    args = parser.parse_args(argv)
    page = render()
    current = output.read_text(encoding="utf-8") if output.is_file() else None
    if args.check:
        if current != page:
            sys.stderr.write("%s is stale: run .venv/bin/python scripts/gen_cause_docs.py\n" % NAME)
            return 1
        return 0
    if current != page:
        output.parent.mkdir(exist_ok=True)
        output.write_text(page, encoding="utf-8")
        sys.stdout.write("wrote %s\n" % NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
