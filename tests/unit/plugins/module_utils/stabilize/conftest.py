"""Shared fixtures of the stabilize unit tests that run real processes (test_clean_up.py, test_strays.py)."""

import subprocess

import pytest


@pytest.fixture
def procs():
    """spawn(argv, cwd) -> Popen: a child in its own session, output discarded; killed and reaped after the test."""
    started = []

    def spawn(argv, cwd):
        proc = subprocess.Popen(argv, cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
