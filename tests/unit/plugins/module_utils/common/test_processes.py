"""processes.signal_if_same against real processes: a PID handed to another process since the scan is never hit."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import processes
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import service_control, strays

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]
NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"


def start(argv=None):
    return subprocess.Popen(argv or SLEEP, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def reap(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def start_as(pid):
    """Start a sleeper that gets `pid` (free again) by setting the kernel's last PID just below it; other
    processes on the host may take it first, so try a few times."""
    if os.geteuid() != 0 or not os.access(NS_LAST_PID, os.W_OK):
        pytest.skip("recycling a PID needs root (%s)" % NS_LAST_PID)
    for _attempt in range(100):
        with open(NS_LAST_PID, "w") as f:
            f.write(str(pid - 1))
        proc = start()
        if proc.pid == pid:
            return proc
        reap(proc)
    pytest.skip("PID %d was taken by other processes 100 times" % pid)


@pytest.fixture
def recycled():
    """(pid, start time of the scanned process, the newcomer now holding that pid)."""
    scanned = start()
    pid, create_time = scanned.pid, psutil.Process(scanned.pid).create_time()
    reap(scanned)
    time.sleep(0.05)  # start times count clock ticks (10 ms): the kernel wraps its PIDs far more slowly
    newcomer = start_as(pid)
    yield pid, create_time, newcomer
    reap(newcomer)


def test_a_recycled_pid_is_not_signalled(recycled):
    pid, scanned_at, newcomer = recycled
    assert psutil.Process(pid).create_time() != scanned_at

    assert processes.signal_if_same(psutil, pid, scanned_at, signal.SIGKILL) is False

    assert newcomer.poll() is None  # the newcomer lives on
    assert processes.same_process(psutil, pid, scanned_at) is False
    # The same call with the newcomer's own start time does reach it.
    assert processes.signal_if_same(psutil, pid, psutil.Process(pid).create_time(), signal.SIGTERM) is True
    assert newcomer.wait(10) == -signal.SIGTERM


def test_stopping_strays_never_hits_the_process_that_got_a_scanned_pid(recycled):
    """The scan saw a stray; it exited and its PID went to another process before the stop."""
    pid, scanned_at, newcomer = recycled
    entry = {"pid": pid, "create_time": scanned_at, "kind": "dev_server", "cmdline": "python -m AgentLocator.main",
             "reason": "runs the app module AgentLocator.main"}

    results, survivors = strays.stop(psutil, [entry], grace=1.0)

    assert newcomer.poll() is None, "the process that got the PID was signalled"
    assert results[0]["signals"] == [] and results[0]["outcome"] == "had exited before it was signalled"
    assert survivors == []


def test_a_gone_process_and_pid_1_are_refused():
    proc = start()
    pid, created = proc.pid, psutil.Process(proc.pid).create_time()
    reap(proc)
    assert processes.signal_if_same(psutil, pid, created, signal.SIGTERM) is False
    assert processes.signal_if_same(psutil, 1, psutil.Process(1).create_time(), 0) is False
    assert processes.signal_if_same(psutil, 0, 0.0, 0) is False


def test_the_process_scanned_is_signalled_with_a_pidfd_when_there_is_one():
    proc = start()
    try:
        assert processes.signal_proc(psutil, psutil.Process(proc.pid), signal.SIGTERM) is True
        assert proc.wait(10) == -signal.SIGTERM
    finally:
        reap(proc)
    if hasattr(os, "pidfd_open"):
        fd = processes._pidfd(os.getpid())
        assert fd is not None  # this kernel and Python take the pidfd path
        os.close(fd)


def test_namespaces_of_a_contained_process_differ():
    outer = start(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"] + SLEEP)
    try:
        deadline = time.time() + 10
        while not psutil.Process(outer.pid).children():
            assert time.time() < deadline
            time.sleep(0.02)
        inner = psutil.Process(outer.pid).children()[0].pid
        assert processes.in_our_namespaces(os.getpid()) is True
        assert processes.in_our_namespaces(inner) is False
        psutil.Process(inner).kill()
    finally:
        reap(outer)


def test_the_service_master_is_stopped_only_while_the_proof_still_holds():
    """service_control.stop_pid re-checks the caller's proof after it named the master by its start time."""
    proc = start()
    try:
        assert service_control.stop_pid(psutil, proc.pid, 1.0, prove=lambda pid: None) == []
        assert proc.poll() is None
        assert service_control.stop_pid(psutil, proc.pid, 1.0, prove=lambda pid: pid) == ["TERM"]
        assert proc.wait(10) == -signal.SIGTERM
    finally:
        reap(proc)
