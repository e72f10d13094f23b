"""probes/heartbeat.py on real gunicorn masters: a worker still importing the app has not touched its heartbeat, a
worker in its request loop has. Each master is stopped by its PID."""

import subprocess
import sys
import time

import psutil
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import heartbeat


@pytest.fixture
def gunicorn_of(tmp_path):
    started = []

    def start(import_seconds):
        (tmp_path / "hbapp.py").write_text("import time\ntime.sleep(%s)\n\n\ndef app(environ, start_response):\n"
                                           "    start_response('200 OK', [])\n    return [b'ok']\n" % import_seconds)
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "hbapp:app", "-b", "127.0.0.1:0", "--timeout", "2",
                                 "--no-control-socket"], cwd=str(tmp_path), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        started.append(proc)
        deadline = time.time() + 20
        while not psutil.Process(proc.pid).children() and time.time() < deadline:
            time.sleep(0.05)
        return psutil.Process(proc.pid).children()[0]
    yield start
    for proc in started:   # TERM; a worker still importing does not heed it: KILL, by PID
        workers = psutil.Process(proc.pid).children()
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for worker in workers:
            try:
                worker.kill()
            except psutil.NoSuchProcess:
                pass


def test_a_worker_still_importing_has_been_booting_since_its_fork(gunicorn_of):
    worker = gunicorn_of(30)
    time.sleep(2.5)
    seconds = heartbeat.booting_for(worker.pid, worker.create_time())
    assert seconds is not None and 2.0 <= seconds < 5, seconds   # past --timeout 2, and gunicorn has not killed it
    assert worker.is_running()


def test_a_worker_in_its_request_loop_is_not_booting(gunicorn_of):
    worker = gunicorn_of(0)
    time.sleep(2.5)   # it touched its heartbeat on entering its loop, and again since
    assert heartbeat.booting_for(worker.pid, worker.create_time()) is None


def test_a_process_without_a_heartbeat_or_gone_is_not_judged():
    assert heartbeat.booting_for(psutil.Process().pid, psutil.Process().create_time()) is None
    assert heartbeat.booting_for(2 ** 22 + 1, 0.0) is None
