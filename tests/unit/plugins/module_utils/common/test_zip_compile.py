"""zip_compile: a module imported from a zip (as AnsiballZ imports the collection's module_utils on a host) is
compiled once, not twice (CPython gh-141276). Each case runs in a fresh interpreter: the fix is process-wide."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import zip_compile

# In the child: count compile() calls of the zip's module and its SyntaxWarnings, import it, report.
CHILD = r'''
import builtins, json, sys, warnings
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "once":
    sys.path.insert(1, sys.argv[3])
    import zip_compile
    assert zip_compile.compile_once() and zip_compile.compile_once()   # a second call changes nothing
compiles, compile_ = [], builtins.compile
def counting(source, filename, *args, **kwargs):
    if "mods.zip" in str(filename):
        compiles.append(filename)
    return compile_(source, filename, *args, **kwargs)
builtins.compile = counting
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import hello
    import hello.sub
print(json.dumps({"compiles": len(compiles), "warnings": len([w for w in caught if w.category is SyntaxWarning]),
                  "answer": hello.answer(), "sub": hello.sub.VALUE, "file": hello.__file__}))
'''


def import_from_zip(tmp_path, mode):
    archive = tmp_path / "mods.zip"
    with zipfile.ZipFile(archive, "w") as z:
        # `1 is 1` makes the compiler warn: a warning per compile.
        z.writestr("hello/__init__.py", "def answer():\n    return 42 if 1 is 1 else 0\n")
        z.writestr("hello/sub.py", "VALUE = 'sub'\n")
    # zip_compile.py alone on the path: the child needs nothing else of the collection.
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "zip_compile.py").write_text(Path(zip_compile.__file__).read_text())
    done = subprocess.run([sys.executable, "-c", CHILD, str(archive), mode, str(alone)], capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(done.stdout)


def test_a_module_from_a_zip_is_compiled_once_and_runs_the_same(tmp_path):
    once = import_from_zip(tmp_path, "once")
    assert once["compiles"] == 2 and once["warnings"] == 1, once   # hello and hello.sub, once each
    assert once["answer"] == 42 and once["sub"] == "sub" and once["file"].endswith("mods.zip/hello/__init__.py"), once


def test_without_it_python_compiles_twice(tmp_path):
    """What compile_once saves, on this Python: when a Python compiles once by itself, this says so."""
    twice = import_from_zip(tmp_path, "twice")
    if twice["compiles"] == 2:
        pytest.skip("this Python's zipimport compiles a module once by itself")
    assert twice["compiles"] == 4 and twice["warnings"] == 2 and twice["answer"] == 42, twice
