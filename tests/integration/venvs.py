"""Extra app venvs with exact pins from PyPI, built once and reused across runs.

Each venv lives in ~/.cache/sre.gunicorn_doctor/venvs/<hash of the base Python and the pins> (override
the root with $DOCTOR_VENV_CACHE). A `.complete` marker is written last, so an interrupted build is
redone; a lock file serialises parallel test workers building the same venv.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("DOCTOR_VENV_CACHE") or Path.home() / ".cache" / "sre.gunicorn_doctor" / "venvs")
BASE_PYTHON = getattr(sys, "_base_executable", None) or sys.executable
# What the demo app needs besides the server: the same versions as the main .venv (requirements-demo.txt).
APP_PINS = ("flask==3.1.3", "flask-sock==0.7.0")


def _key(pins):
    version = subprocess.run([BASE_PYTHON, "-c", "import sys; print(sys.version)"], stdout=subprocess.PIPE,
                             text=True, check=True).stdout
    return hashlib.sha256((BASE_PYTHON + "\n" + version + "\n".join(sorted(pins))).encode()).hexdigest()[:16]


def venv(*pins):
    """-> path of the venv's python with APP_PINS + `pins` installed (exact versions)."""
    pins = tuple(APP_PINS) + tuple(pins)
    root = CACHE / _key(pins)
    python = root / "bin" / "python"
    marker = root / ".complete"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(str(root) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_file():
            shutil.rmtree(root, ignore_errors=True)
            subprocess.run([BASE_PYTHON, "-m", "venv", str(root)], check=True, timeout=300)
            done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                   *pins], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=600, check=False)
            if done.returncode != 0:
                shutil.rmtree(root, ignore_errors=True)
                raise RuntimeError("pip install %s failed:\n%s" % (" ".join(pins), done.stdout[-3000:]))
            (root / "pins.txt").write_text("\n".join(pins) + "\n")
            marker.write_text("ok\n")
    return str(python)
