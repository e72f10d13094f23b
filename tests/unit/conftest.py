"""Unit tests: make `ansible_collections.sre.gunicorn_doctor` importable under plain pytest.

The plugins import each other by their full collection name
(`ansible_collections.sre.gunicorn_doctor.plugins.module_utils...`), so the checkout must sit at
`<dir>/ansible_collections/sre/gunicorn_doctor` on sys.path. scripts/bootstrap.sh makes exactly
that: `.collections/ansible_collections/sre/gunicorn_doctor -> <checkout>`.

No collection loader is needed: `ansible_collections`, `sre`, `plugins` and `module_utils` have
no `__init__.py`, and Python 3 imports directories without one as implicit namespace packages
(PEP 420). Putting `.collections` first on sys.path is therefore enough; ansible-core's
`_AnsibleCollectionFinder` is only required for Ansible's own plugin loading, not for importing
pure module_utils. (Verified: `import ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain.gunicorn`
resolves to `.collections/ansible_collections/...` with `ansible_collections.__path__` a
`_NamespacePath`.)

When bootstrap.sh has not run, the same layout is built in a temporary directory (a symlink to
the checkout), so the unit tests never depend on the machine's installed collections.
"""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]          # the checkout = the collection root
COLLECTIONS = ROOT / ".collections"
LINK = COLLECTIONS / "ansible_collections" / "sre" / "gunicorn_doctor"


def _collections_dir():
    if LINK.is_dir() and (LINK / "galaxy.yml").is_file() and LINK.resolve() == ROOT:
        return str(COLLECTIONS)
    tmp = Path(tempfile.mkdtemp(prefix="gunicorn_doctor_unit_"))
    atexit.register(shutil.rmtree, str(tmp), True)
    (tmp / "ansible_collections" / "sre").mkdir(parents=True)
    os.symlink(str(ROOT), str(tmp / "ansible_collections" / "sre" / "gunicorn_doctor"))
    return str(tmp)


_path = _collections_dir()
if _path not in sys.path:
    sys.path.insert(0, _path)

# The tests mirror the plugin tree (tests/unit/plugins/module_utils/<package>/, plugin_utils/, ...). The
# recorded facts of a host and the contract's invariants of every report live in judges/test_verdict.py;
# tests of other packages (the voice probe, the ladder) build on them with `import test_verdict`.
_RECORDED_FACTS = str(ROOT / "tests" / "unit" / "plugins" / "module_utils" / "judges")
if _RECORDED_FACTS not in sys.path:
    sys.path.append(_RECORDED_FACTS)
