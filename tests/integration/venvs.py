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


# A venv a non-root service user can run (the test venv's Python lives under root's home): the system Python, in
# a root-owned cache every user may read.
SYSTEM_PYTHON = "/usr/bin/python3"
SHARED_CACHE = Path(os.environ.get("DOCTOR_SHARED_VENV_CACHE") or "/var/cache/sre.gunicorn_doctor/venvs")


def _key(pins, base):
    version = subprocess.run([base, "-c", "import sys; print(sys.version)"], stdout=subprocess.PIPE,
                             text=True, check=True).stdout
    return hashlib.sha256((base + "\n" + version + "\n".join(sorted(pins))).encode()).hexdigest()[:16]


def venv(*pins, base=BASE_PYTHON, cache=CACHE):
    """-> path of the venv's python with APP_PINS + `pins` installed (exact versions), made by `base` in `cache`."""
    pins = tuple(APP_PINS) + tuple(pins)
    root = cache / _key(pins, base)
    python = root / "bin" / "python"
    marker = root / ".complete"
    cache.mkdir(parents=True, exist_ok=True)
    with open(str(root) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_file():
            shutil.rmtree(root, ignore_errors=True)
            subprocess.run([base, "-m", "venv", str(root)], check=True, timeout=300)
            done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                   *pins], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=600, check=False)
            if done.returncode != 0:
                shutil.rmtree(root, ignore_errors=True)
                raise RuntimeError("pip install %s failed:\n%s" % (" ".join(pins), done.stdout[-3000:]))
            (root / "pins.txt").write_text("\n".join(pins) + "\n")
            marker.write_text("ok\n")
    return str(python)


def shared_venv(*pins):
    """-> python of a venv every user can run (a service user's app python), with APP_PINS + `pins`."""
    SHARED_CACHE.mkdir(parents=True, exist_ok=True)
    for directory in (SHARED_CACHE, SHARED_CACHE.parent):
        os.chmod(directory, 0o755)
    return venv(*pins, base=SYSTEM_PYTHON, cache=SHARED_CACHE)
