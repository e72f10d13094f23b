"""Shared fixtures of the stabilize unit tests that run real processes (test_clean_up.py, test_strays.py)."""

import subprocess

import psutil
import pytest


@pytest.fixture
def procs():
    """spawn(argv, cwd) -> Popen: a child in its own session, output discarded; killed and reaped after the test, with
    the processes it started."""
    started = []

    def spawn(argv, cwd):
        proc = subprocess.Popen(argv, cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        # What it started too (a loop's gunicorn binds port 1 as root and would run on), each by its PID: the loop
        # first, so it starts no other.
        try:
            kids = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for kid in kids:
            try:
                kid.kill()   # psutil checks the PID still names the same process
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(kids, timeout=5)
