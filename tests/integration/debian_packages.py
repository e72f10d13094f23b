"""Debian packages the tests need (sshd, nginx, chromium), installed with apt-get when missing, as root.

Without an init system a package's postinst would start its daemon for the whole machine (openssh-server: sshd on
0.0.0.0:22, nginx on 0.0.0.0:80): a policy-rc.d that says no is put in place for the install, as in container
images, and removed afterwards. One install at a time across parallel test workers (a lock file): two installs
would race on that policy file and on dpkg's own lock.
"""

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

POLICY = Path("/usr/sbin/policy-rc.d")
LOCK = Path("/tmp/gunicorn_doctor-tests-apt.lock")


def ensure(packages, binaries):
    """Install `packages` unless every one of `binaries` (a name on PATH or a path) is there already. Skips the test
    when they are missing and we are not root; raises RuntimeError with apt-get's output when the install fails."""
    if present(binaries):
        return
    if os.geteuid() != 0:
        pytest.skip("%s not installed and we are not root: sudo apt-get install %s" % (
            " ".join(binaries), " ".join(packages)))
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if present(binaries):   # another worker installed them while this one waited
            return
        made_policy = not POLICY.exists()
        if made_policy:
            POLICY.write_text("#!/bin/sh\n# written by tests/integration/debian_packages.py for one install\nexit 101\n")
            POLICY.chmod(0o755)
        try:
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            for argv in (["apt-get", "update", "-qq"],
                         ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + list(packages)):
                done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      timeout=900, check=False)
                if done.returncode != 0:
                    raise RuntimeError("%s failed (%d):\n%s" % (" ".join(argv), done.returncode, done.stdout[-3000:]))
        finally:
            if made_policy:
                POLICY.unlink()


def present(binaries):
    return all(shutil.which(b) or os.path.exists(b) for b in binaries)
