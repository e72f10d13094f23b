"""What the stability window saw (facts['healthz']['watch']) as the judges word it: a master replaced while every
sample was 200, a master gone, a worker re-booted, a second master that came and went, a slow import stopped at the
service's --timeout. Facts built as probe_host returns them (test_verdict's builders)."""

from test_verdict import MASTER, cause, check, diagnose, healthy_facts, ids, set_healthz


def watched(facts, changes=(), log_events=(), window=14.0, ended_by=None):
    set_healthz(facts, [200] * 20, wait_reason="worker 4250 is only 1.0 s old: watching until it is 15 s old")
    facts["healthz"]["window_seconds"] = window
    facts["healthz"]["watch"] = {"changes": list(changes), "log_events": list(log_events), "log_bytes_read": 0,
                                 "ended_by": ended_by, "seconds": 6.4 if ended_by else window}
    return facts


def master(what, pid, at):
    return {"at": at, "what": what, "role": "master", "pid": pid, "master": None}


def worker(what, pid, at, of=MASTER):
    return {"at": at, "what": what, "role": "worker", "pid": pid, "master": of}


TERM = {"at": 6.0, "event": "signal_term", "pid": MASTER,
        "line": "[2026-11-25 12:00:06 +0000] [%d] [INFO] Handling signal: term" % MASTER}


def test_a_quiet_window_passes(tmp_path):
    report = diagnose(watched(healthy_facts(tmp_path)))
    assert report["verdict"] == "healthy"
    assert check(report, "process", "masters through the window")["status"] == "pass"


def test_a_master_replaced_while_every_sample_was_200(tmp_path):
    facts = watched(healthy_facts(tmp_path), [master("started", 5000, 5.9), master("exited", MASTER, 6.2),
                                              worker("exited", 4250, 6.2)], [TERM], ended_by="process")
    report = diagnose(facts)
    found = cause(report, "periodic_sigterm")
    assert found["evidence"][0].startswith('master %d replaced by 5000 at +6.2 s ("Handling signal: term" at +6.0 s)'
                                           % MASTER)
    assert "answered 200, then master %d replaced by 5000" % MASTER in cause(report, "healthz_flapping")["evidence"][0]
    assert report["verdict"] == "down" and report["failed_layer"] == "process"
    assert "the evidence was conclusive" in check(report, "healthz", "stable 200")["detail"]


def test_a_master_gone_with_no_replacement(tmp_path):
    facts = watched(healthy_facts(tmp_path), [master("exited", MASTER, 2.6)], [TERM], ended_by="process")
    report = diagnose(facts)
    assert "no master replaced it" in cause(report, "healthz_flapping")["evidence"][0]
    assert "periodic_sigterm" not in ids(report)   # one TERM and nothing restarted it: not a restart loop
    assert report["verdict"] == "down" and report["failed_layer"] == "healthz"


def test_a_worker_rebooted_after_a_timeout(tmp_path):
    timeout = {"at": 3.0, "event": "worker_timeout", "pid": MASTER, "worker": "4250",
               "line": "[2026-11-25 12:00:03 +0000] [%d] [CRITICAL] WORKER TIMEOUT (pid:4250)" % MASTER}
    facts = watched(healthy_facts(tmp_path), [worker("exited", 4250, 3.1), worker("started", 4260, 3.2)], [timeout],
                    ended_by="log")
    restarts = check(diagnose(facts), "process", "worker restarts")
    assert restarts["status"] == "warn"
    assert restarts["detail"].startswith("worker 4250 of master %d exited at +3.1 s, worker 4260 booted at +3.2 s "
                                         "(WORKER TIMEOUT (pid:4250))" % MASTER)


def test_a_second_master_that_came_and_went_is_not_the_services_instability(tmp_path):
    facts = watched(healthy_facts(tmp_path), [master("started", 5000, 2.0), master("exited", 5000, 7.0)])
    report = diagnose(facts)
    assert "healthz_flapping" not in ids(report)
    assert "master 5000 started at +2.0 s" in check(report, "process", "masters through the window")["detail"]


def test_an_import_stopped_at_the_services_timeout_is_a_slow_boot(tmp_path):
    facts = healthy_facts(tmp_path)
    facts["boot"]["dry_import"] = {"ok": False, "timed_out": True, "over_limit": True, "limit": 5,
                                   "limit_source": "master 4242: command line", "import_seconds": 5.02,
                                   "seconds": 5.6, "exit_code": -15, "output_tail": []}
    found = cause(diagnose(facts), "slow_boot")
    assert found["evidence"][0] == ("importing AgentLocator.main:app did not finish within 5.02 s: the worker timeout "
                                    "is 5 s (master 4242: command line)")


def test_a_master_that_could_not_start_and_was_started_again_is_no_sigterm(tmp_path):
    """An eventlet crash loop: gunicorn refuses the hub before it opens its log. The probe saw the master with no worker
    and no socket; the window saw it exit and its runner start the next one. Nothing sent SIGTERM."""
    from test_verdict import master_fact, set_sockets
    facts = healthy_facts(tmp_path)
    facts["process"]["masters"] = [master_fact(age=1.2, workers=0, runner={"kind": "shell_loop", "detail": "bash",
                                                                           "pid": 77})]
    facts["log"] = None
    set_sockets(facts, [])
    facts = watched(facts, [master("exited", MASTER, 1.1), master("started", 5000, 1.1)], ended_by="process")
    set_healthz(facts, ["Connection refused"] * 3)
    facts["healthz"]["watch"] = {"changes": [master("exited", MASTER, 1.1), master("started", 5000, 1.1)],
                                 "log_events": [], "log_bytes_read": 0, "ended_by": "process", "seconds": 1.1}
    report = diagnose(facts)
    assert "periodic_sigterm" not in ids(report)
    detail = check(report, "process", "masters through the window")
    assert detail["status"] == "warn" and "could not start" in detail["detail"], detail
