"""probes/window.py and healthz.Sampler: the stability window watches the app's processes and log besides /healthz.

Real parts: an HTTP server on loopback, real processes whose command line is a gunicorn of the app (a python
script named gunicorn that only sleeps), a real log file that grows."""

import contextlib
import http.server
import os
import subprocess
import sys
import threading
import time

import psutil
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import boot, healthz, host, logfile, process, window

APP = "AgentLocator.main:app"


@contextlib.contextmanager
def serving(status_of):
    """An HTTP server on loopback whose every GET is answered `status_of()` with the body "ok" -> its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status_of())
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server():
    """/healthz on loopback; `answers` is the list of statuses still to give (the last one repeats)."""
    answers = [200]
    with serving(lambda: answers.pop(0) if len(answers) > 1 else answers[0]) as port:
        yield port, answers


def fake_gunicorn(chdir, with_worker=False):
    """A real process that looks like a master of the app (`python <dir>/gunicorn APP` in `chdir`; it only sleeps),
    with a forked worker when asked."""
    script = chdir / "bin" / "gunicorn"
    script.parent.mkdir(exist_ok=True)
    script.write_text("import os, sys, time\nif 'worker' in sys.argv and os.fork() == 0:\n    time.sleep(60)\n"
                      "time.sleep(60)\n")
    argv = [sys.executable, str(script), APP] + (["--name", "worker"] if with_worker else [])
    return subprocess.Popen(argv, cwd=str(chdir))


def stop(*procs):
    for proc in procs:
        try:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
        except psutil.NoSuchProcess:
            pass
        proc.kill()
        proc.wait()


def test_sampler_ends_when_the_caller_stops_it(server):
    port, answers = server
    sampler = healthz.Sampler(port, "/healthz", 30, "young")
    thread = threading.Thread(target=sampler.run)
    thread.start()
    assert sampler.first.wait(5)
    time.sleep(0.6)
    started = time.time()
    sampler.stop.set()
    thread.join(5)
    assert time.time() - started < 1.0
    facts = sampler.facts()
    assert facts["window_seconds"] == 30 and all(s["status"] == 200 for s in facts["samples"])


def test_a_young_service_that_answers_after_booting_is_watched_from_its_first_200(server):
    port, answers = server
    answers[:] = [503, 503, 200]
    facts = healthz.Sampler(port, "/healthz", 2.5, "worker 12 is only 0.5 s old").run()
    assert [s["status"] for s in facts["booting"]] == [503, 503]
    assert facts["samples"][0]["status"] == 200 and all(s["status"] == 200 for s in facts["samples"])
    assert "still booting" in facts["wait_reason"]


def test_a_200_service_that_fails_ends_the_sampling(server):
    port, answers = server
    answers[:] = [200, 200, 500]
    sampler = healthz.Sampler(port, "/healthz", 20, "young")
    facts = sampler.run()
    assert sampler.failed and [s["status"] for s in facts["samples"]] == [200, 200, 500]


def test_a_settled_failure_is_judged_on_one_sample_and_an_unsettled_one_is_re_sampled(server):
    port, answers = server
    answers[:] = [503]
    started = time.time()
    facts = healthz.Sampler(port, "/healthz", 0, "old", settled="nothing listens on $PORT").run()
    assert [s["status"] for s in facts["samples"]] == [503] and facts["window_seconds"] == 0
    assert facts["wait_reason"] == "no 200, and nothing listens on $PORT: one sample suffices"
    assert time.time() - started < healthz.DOWN_RESAMPLE_WINDOW
    facts = healthz.Sampler(port, "/healthz", 0, "old").run()   # without that evidence: down or flapping?
    assert len(facts["samples"]) > 1 and facts["window_seconds"] == healthz.DOWN_RESAMPLE_WINDOW


def test_only_a_settled_app_bound_elsewhere_skips_the_re_sampling():
    masters = {"masters": [{"pid": 10}]}
    elsewhere = {"on_port": [], "app_sockets": [{"port": 9001, "app_role": "master"}, {"port": 9001, "app_role": "worker of 10"}]}
    context = {"process": masters, "wait": 0, "port": 8123}
    assert host.bound_elsewhere(context, elsewhere) == ("nothing listens on $PORT=8123 while the app, older than the "
                                                        "window, listens on 9001")
    assert host.bound_elsewhere(dict(context, wait=3.5), elsewhere) is None          # a young process may still bind
    assert host.bound_elsewhere(context, dict(elsewhere, on_port=[{"pid": 99}])) is None   # something holds $PORT
    stray = {"on_port": [], "app_sockets": [{"port": 5000, "app_role": "stray (dev_server)"}]}
    assert host.bound_elsewhere(context, stray) is None
    dry = {"ok": True, "healthz_status": 200}
    assert "only not on $PORT (port 9001)" in host._boot_proven({"listen": elsewhere, "healthz": None}, dry)
    assert host._boot_proven({"listen": elsewhere, "healthz": None}, dict(dry, ok=False)) is None


def test_a_200_from_the_apps_own_gunicorn_proves_it_boots():
    samples = {"samples": [{"status": 200}, {"status": None}]}
    own = {"on_port": [{"pid": 10, "app_role": "master"}], "app_sockets": []}
    assert "answered 200 on $PORT" in host._boot_proven({"listen": own, "healthz": samples}, None)
    stranger = {"on_port": [{"pid": 99, "app_role": None}], "app_sockets": []}
    assert host._boot_proven({"listen": stranger, "healthz": samples}, None) is None
    assert host._boot_proven({"listen": own, "healthz": {"samples": [{"status": 503}]}}, None) is None


def test_process_watch_sees_a_master_replaced_and_its_worker_go(tmp_path):
    old = fake_gunicorn(tmp_path, with_worker=True)
    new = None
    try:
        deadline = time.time() + 10
        while not psutil.Process(old.pid).children() and time.time() < deadline:
            time.sleep(0.05)
        facts = process.collect(psutil, APP, str(tmp_path))
        assert [m["pid"] for m in facts["masters"]] == [old.pid] and len(facts["masters"][0]["workers"]) == 1
        worker = facts["masters"][0]["workers"][0]["pid"]
        watch = window.ProcessWatch(psutil, APP, str(tmp_path), [os.getpid()], facts["masters"], time.time())
        watch.look()
        assert watch.changes == []
        new = fake_gunicorn(tmp_path)
        worker_proc = psutil.Process(worker)
        stop(old)
        # The killed worker is reaped by init a moment later: the look after that must see it gone.
        psutil.wait_procs([worker_proc], timeout=5)
        watch.look()
        what = sorted((c["what"], c["role"], c["pid"], c["master"]) for c in watch.changes)
        assert what == [("exited", "master", old.pid, None), ("exited", "worker", worker, old.pid),
                        ("started", "master", new.pid, None)]
        assert watch.masters_alive() == {new.pid}
    finally:
        stop(*[p for p in (old, new) if p is not None])


def test_process_watch_takes_the_probes_table_and_reads_only_what_it_could_not_rule_out(tmp_path, monkeypatch):
    """The probe's one pass over /proc (process.scan) rules out the old processes that run no gunicorn: the window's
    first look reads no command line of theirs again, and still sees a master of the app that starts during it."""
    table = process.scan(psutil)
    ruled_out = [i["pid"] for dummy, i in table if time.time() - i["create_time"] > window.EXEC_GRACE
                 and not gunicorn.is_gunicorn_cmdline(i["cmdline"])]
    assert 1 in ruled_out and len(ruled_out) > 5
    read, real = [], process._info
    monkeypatch.setattr(process, "_info", lambda proc, whole=True: read.append(proc.pid) or real(proc, whole))
    watch = window.ProcessWatch(psutil, APP, str(tmp_path), [os.getpid()], [], time.time(), table)
    new = fake_gunicorn(tmp_path)
    try:
        deadline = time.time() + 10
        while APP not in " ".join(psutil.Process(new.pid).cmdline()) and time.time() < deadline:
            time.sleep(0.02)
        watch.look()
        assert not set(read) & set(ruled_out)
        assert [(c["what"], c["role"], c["pid"]) for c in watch.changes] == [("started", "master", new.pid)]
    finally:
        stop(new)


def test_log_watch_reads_only_new_whole_lines(tmp_path):
    log = tmp_path / "gunicorn.log"
    log.write_text("[2026-12-04 10:00:00 +0000] [10] [INFO] Handling signal: term\n")
    watch = window.LogWatch(str(log), log.stat().st_size, time.time())
    watch.look()
    assert watch.events == []
    with open(log, "a") as f:
        f.write("[2026-12-04 10:00:01 +0000] [11] [CRITICAL] WORKER TIMEOUT (pid:12)\n[2026-12-04 10:00:01 +0000] [1")
    watch.look()
    assert [(e["event"], e["worker"]) for e in watch.events] == [("worker_timeout", "12")]
    with open(log, "a") as f:
        f.write("1] [INFO] Booting worker with pid: 13\n")
    watch.look()
    assert [e["event"] for e in watch.events] == ["worker_timeout", "worker_boot"]
    log.write_text("[2026-12-04 10:00:02 +0000] [20] [INFO] Starting gunicorn 25.3.0\n")   # rotated
    watch.look()
    assert watch.events[-1]["event"] == "starting"


def test_log_watch_reads_a_burst_bounded(tmp_path):
    log = tmp_path / "gunicorn.log"
    log.write_text("")
    watch = window.LogWatch(str(log), 0, time.time())
    with open(log, "a") as f:
        f.write("x" * 100 + "\n" + "noise line\n" * 100000 + "[2026-12-04 10:00:01 +0000] [11] [INFO] Handling signal: term\n")
    watch.look()
    assert watch.read_bytes <= window.LOG_READ_MAX
    assert [e["event"] for e in watch.events] == ["signal_term"]


class Processes(object):
    """What ProcessWatch records, fed by the test: the Window's decisions only depend on it."""

    def __init__(self, started):
        self.started, self.changes, self.alive, self.booting = started, [], set([100]), {}

    def look(self):
        pass

    def masters_alive(self):
        return self.alive

    def none_serving(self):
        return bool(self.booting)


def test_window_ends_at_a_replacement_not_at_its_end(server):
    port, answers = server
    started = time.time()
    processes = Processes(started)
    log = window.LogWatch(None, 0, started)
    sampler = healthz.Sampler(port, "/healthz", 30, "young")
    timer = threading.Timer(1.0, processes.changes.extend, ([
        {"at": 1.0, "what": "exited", "role": "master", "pid": 100, "master": None},
        {"at": 1.0, "what": "started", "role": "master", "pid": 200, "master": None}],))
    timer.start()
    facts = window.Window(sampler, processes, log).run()
    assert time.time() - started < 3
    assert facts["watch"]["ended_by"] == "process"
    assert all(s["status"] == 200 for s in facts["samples"])


def test_window_waits_briefly_for_the_replacement_of_a_master_that_exited(server):
    port, answers = server
    started = time.time()
    processes = Processes(started)
    sampler = healthz.Sampler(port, "/healthz", 30, "young")
    processes.changes.append({"at": 0.0, "what": "exited", "role": "master", "pid": 100, "master": None})
    facts = window.Window(sampler, processes, window.LogWatch(None, 0, started)).run()
    assert window.SETTLE <= time.time() - started < window.SETTLE + 1.5
    assert facts["watch"]["ended_by"] == "process"


def test_dry_import_stops_at_the_services_timeout(tmp_path):
    (tmp_path / "slowapp.py").write_text("import time\ntime.sleep(30)\napp = None\n")
    started = time.time()
    dry = boot.run_dry_import(sys.executable, str(tmp_path), "slowapp:app", "/healthz", dict(os.environ), 30, psutil,
                              import_limit=(1, "master 42: command line"))
    assert time.time() - started < 8
    assert dry["over_limit"] and dry["timed_out"] and dry["limit"] == 1
    assert 1 <= dry["import_seconds"] < 3
    assert not any(line.startswith("@@") for line in dry["output_tail"])


def test_dry_import_within_the_services_timeout_is_not_stopped(tmp_path):
    (tmp_path / "quickapp.py").write_text("import time\ntime.sleep(0.2)\napp = None\n")
    dry = boot.run_dry_import(sys.executable, str(tmp_path), "quickapp:app", "/healthz", dict(os.environ), 30, psutil,
                              import_limit=(5, "master 42: command line"))
    assert not dry.get("over_limit") and not dry["timed_out"] and dry["ok"]


def test_window_ends_at_once_when_the_log_already_shows_the_run_unstable(server):
    port, answers = server
    started = time.time()
    sampler = healthz.Sampler(port, "/healthz", 30, "young")
    facts = window.Window(sampler, Processes(started), window.LogWatch(None, 0, started),
                          history="WORKER TIMEOUT (pid:11), logged 3 s before the window").run()
    assert time.time() - started < 1.5
    assert facts["watch"]["ended_by"] == "history" and facts["watch"]["history"].startswith("WORKER TIMEOUT")
    assert [s["status"] for s in facts["samples"]] == [200]


def test_a_worker_booting_past_the_timeout_ends_the_window_without_waiting_out_the_first_sample():
    """A port whose backlog takes the connection while nothing answers, as a gunicorn whose only worker still imports."""
    import socket
    with socket.socket() as backlog:
        backlog.bind(("127.0.0.1", 0))
        backlog.listen(8)
        started = time.time()
        processes = Processes(started)
        processes.booting = {300: {"pid": 300, "master": 100, "seconds": 18.0, "at": 0.0}}
        sampler = healthz.Sampler(backlog.getsockname()[1], "/healthz", 30, "young")
        facts = window.Window(sampler, processes, window.LogWatch(None, 0, started), boot_limit=5).run()
    assert time.time() - started < 1.5   # not the sample's 3 s
    assert facts["watch"]["ended_by"] == "boot" and facts["watch"]["slow_boots"][0]["pid"] == 300
    assert facts["samples"][0]["status"] is None and "not waited for further" in facts["samples"][0]["error"]
    processes.booting[300]["seconds"] = 4.0   # within the timeout: not (yet) a slow boot
    assert window.Window(sampler, processes, window.LogWatch(None, 0, started), boot_limit=5).conclusive() is None


def test_a_master_that_exited_while_its_replacement_already_runs_leaves_nothing_pending(server):
    port, answers = server
    started = time.time()
    processes = Processes(started)
    processes.alive = set([100, 200])   # 200 started before the window
    processes.changes.append({"at": 0.0, "what": "exited", "role": "master", "pid": 100, "master": None})
    facts = window.Window(healthz.Sampler(port, "/healthz", 30, "young"), processes,
                          window.LogWatch(None, 0, started)).run()
    assert time.time() - started < window.SETTLE
    assert facts["watch"]["ended_by"] == "process"


class CountedProcesses(Processes):
    """Processes that count the window's looks."""

    def __init__(self, started):
        super(CountedProcesses, self).__init__(started)
        self.looks = 0

    def look(self):
        self.looks += 1


def test_a_conclusive_first_look_ends_the_window_at_its_first_sample(server):
    port, answers = server
    answers[:] = [503]
    started = time.time()
    processes = Processes(started)
    # What would otherwise hold it for SETTLE: a master that exited with no replacement yet.
    processes.alive = set()
    processes.changes.append({"at": 0.0, "what": "exited", "role": "master", "pid": 100, "master": None})
    crash = "EVENTLET_HUB=no_such_hub in /proc/7/environ (bash pid 7, which restarts the master): No module named x"
    facts = window.Window(healthz.Sampler(port, "/healthz", 30, "young"), processes, window.LogWatch(None, 0, started),
                          at_once=crash).run()
    assert time.time() - started < 1.0
    assert facts["watch"]["ended_by"] == "at_once" and facts["watch"]["at_once"] == crash
    assert [s["status"] for s in facts["samples"]] == [503]
    assert facts["window_seconds"] == 0 and facts["wait_reason"] == "one sample suffices: " + crash


def test_after_the_sampling_the_window_looks_at_intervals_not_in_a_spin(server):
    port, answers = server
    answers[:] = [200, 500]   # a 200 service that fails: sampling ends, the window settles for SETTLE
    started = time.time()
    processes = CountedProcesses(started)
    facts = window.Window(healthz.Sampler(port, "/healthz", 30, "young"), processes,
                          window.LogWatch(None, 0, started)).run()
    seconds = time.time() - started
    assert facts["watch"]["ended_by"] == "healthz" and seconds >= window.SETTLE
    assert processes.looks <= seconds / window.LOOK_INTERVAL + 3, processes.looks


def log_line(epoch, pid, message):
    return "[%s] [%d] [INFO] %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime(epoch)), pid, message)


def test_a_restart_underway_keeps_a_conclusive_window_watching_until_it_is_done(server, tmp_path):
    port, answers = server
    now = time.time()
    log = tmp_path / "gunicorn.log"
    log.write_text(log_line(now - 30, 100, "Starting gunicorn 25.3.0") +
                   log_line(now - 30, 100, "Listening at: http://0.0.0.0:%d (100)" % port) +
                   log_line(now - 1, 100, "Handling signal: term"))
    earlier = logfile.collect(str(log))["events"]
    processes = Processes(now)   # master 100 runs: it is shutting down

    def shut_down():
        with open(log, "a") as f:
            f.write(log_line(time.time(), 100, "Shutting down: Master"))
    timer = threading.Timer(1.2, shut_down)
    timer.start()
    facts = window.Window(healthz.Sampler(port, "/healthz", 30, "young"), processes,
                          window.LogWatch(str(log), log.stat().st_size, now, earlier),
                          history="the log already shows the masters restarted from outside").run()
    seconds = time.time() - now
    timer.join()
    assert 1.2 <= seconds < window.SETTLE, seconds   # not at once on the history, not the whole settle either
    underway = facts["watch"]["restart_underway"]
    assert underway.startswith("master 100 handled SIGTERM ") and underway.endswith(" ago and has not shut down yet")
    assert [e["event"] for e in facts["watch"]["log_events"]] == ["master_shutdown"]


def test_a_settled_service_in_the_middle_of_a_restart_is_watched_not_sampled_once():
    masters = [{"pid": 10, "age": 3600.0, "workers": [{"pid": 11, "age": 3500.0}]}]
    assert host.wait_decision(masters, 15) == (0, "youngest process (worker 11) is 3500 s old")
    wait, reason = host.wait_decision(masters, 15, "master 10 handled SIGTERM 1 s ago and has not shut down yet")
    assert wait == 15 and reason == ("master 10 handled SIGTERM 1 s ago and has not shut down yet: watching the "
                                     "restart for up to 15 s")
