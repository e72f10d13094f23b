"""The restart history read from real gunicorn 25.3 logs (tests/unit/.../domain/logs, captured from real runs):
restart_loop.log - a bash loop that started `gunicorn AgentLocator.main:app` and SIGTERMed it every ~2 s;
signals_and_timeouts.log - one master with a WORKER TIMEOUT stopped by SIGINT, a gthread master stopped by SIGQUIT,
a master killed by SIGKILL (its orphaned worker kept the port), a master that then could not bind."""

from pathlib import Path

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn, restart_history
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import logfile

LOGS = Path(__file__).parent / "logs"


def gens_of(name):
    return logfile.collect(str(LOGS / name))["generations"]


def test_each_master_of_a_restart_loop_is_one_generation_with_its_stop():
    gens = gens_of("restart_loop.log")
    assert [g["pid"] for g in gens] == [14740, 14799, 14947, 15080]
    first = gens[0]
    assert first["listening"] == "http://0.0.0.0:18777" and first["worker_class"] == "sync"
    assert first["version"] == "25.3.0" and first["worker_boots"] == 1
    assert [s["signal"] for s in first["signals"]] == ["term"]
    assert first["end"] == "shutdown" and first["stopped"] - first["started"] == 3
    assert all(g["end"] == "shutdown" and [s["signal"] for s in g["signals"]] == ["term"] for g in gens)


def test_the_pattern_of_a_restart_loop():
    found = restart_history.pattern(gens_of("restart_loop.log"))
    assert found["restarts"] == 3 and found["span"] == 9
    assert found["regular"] and found["period"] == 3 and found["jitter"] == 1
    assert found["text"] == "restarted 3 times in 9 s, every 3 s +/- 1 (4 x SIGTERM)"


def test_the_timeline_says_when_each_master_started_and_what_stopped_it():
    lines = restart_history.timeline(gens_of("restart_loop.log"))
    assert lines[0] == ("19:00:57 master 14740 started (sync, http://0.0.0.0:18777), 1 worker boot, SIGTERM after 2 s, "
                        "shut down after 3 s")
    assert lines[-1] == ("19:01:06 master 15080 started (sync, http://0.0.0.0:18777), 1 worker boot, SIGTERM after 0 s, "
                         "shut down after 2 s")


def test_other_signals_worker_timeouts_a_killed_master_and_a_failed_bind():
    gens = gens_of("signals_and_timeouts.log")
    assert [g["pid"] for g in gens] == [15669, 16062, 16243, 16378]
    timed_out, quit_, killed, no_bind = gens
    assert timed_out["worker_timeouts"] == 1 and timed_out["worker_boots"] == 2
    assert [s["signal"] for s in timed_out["signals"]] == ["int"]
    assert quit_["worker_class"] == "gthread" and [s["signal"] for s in quit_["signals"]] == ["quit"]
    # SIGKILL leaves no line; the next master never listened (the orphaned worker held the port), so it is not
    # taken as the killed one's successor: its end stays open.
    assert killed["signals"] == [] and killed["end"] is None
    assert no_bind["listening"] is None and no_bind["end"] == "bind_failed"
    found = restart_history.pattern(gens)
    assert not found["regular"]
    assert found["text"] == "restarted 3 times in 14 s, 3 to 8 s apart (1 x SIGINT, 1 x SIGQUIT)"
    lines = restart_history.timeline(gens)
    assert lines[0].endswith("2 worker boots, 1 WORKER TIMEOUT, SIGINT after 6 s, shut down after 7 s")
    assert lines[-1] == "19:01:28 master 16378 started, could not bind, gave up after 5 s"


def test_a_master_replaced_on_its_address_without_a_shutdown_line_vanished():
    text = (LOGS / "restart_loop.log").read_text().splitlines()
    # Drop the first master's "Shutting down" line: what a SIGKILL (or a watchdog's SIGABRT) leaves.
    lines = [line for line in text if "[14740] [INFO] Shutting down" not in line]
    events = gunicorn.scan_log(lines)["events"]
    for event in events:
        event["epoch"] = logfile.parse_time(event["time"])
    gens = restart_history.generations(events)
    assert gens[0]["end"] == "vanished"
    assert "gone without a shutdown line" in restart_history.describe(gens[0])


def test_the_tail_may_begin_inside_a_masters_run():
    lines = (LOGS / "restart_loop.log").read_text().splitlines()[1:]   # no "Starting gunicorn" of 14740
    events = gunicorn.scan_log(lines)["events"]
    for event in events:
        event["epoch"] = logfile.parse_time(event["time"])
    gens = restart_history.generations(events)
    assert gens[0]["pid"] == 14740 and gens[0]["started"] is None
    assert restart_history.describe(gens[0]).startswith("19:00:57 master 14740 (started before the log tail)")
    assert restart_history.pattern(gens)["restarts"] == 2


def test_one_master_is_no_pattern_and_old_restarts_do_not_count():
    gens = gens_of("restart_loop.log")
    assert restart_history.pattern(gens[:1]) is None
    assert restart_history.pattern(gens, newest=gens[-1]["started"] + 3600) is None


def test_durations_read_as_a_person_would_say_them():
    assert [restart_history.duration(s) for s in (8, 119, 3588, 90000)] == ["8 s", "119 s", "60 min", "25 h"]


def unsettled_log(lines):
    """Log facts (probes/logfile.collect) of these gunicorn lines, `(offset s, pid, message)` after 12:00:00."""
    text = "".join("[2026-12-05 12:00:%02d +0000] [%d] [INFO] %s\n" % (at, pid, msg) for at, pid, msg in lines)
    events = gunicorn.scan_log(text.splitlines())["events"]
    for e in events:
        e["epoch"] = logfile.parse_time(e["time"])
    return {"events": events, "generations": restart_history.generations(events)}


NOON = logfile.parse_time("2026-12-05 12:00:00 +0000")


def test_a_worker_timeout_of_the_running_master_in_the_last_window_is_already_unstable():
    log = unsettled_log([(0, 10, "Starting gunicorn 25.3.0"), (0, 10, "Listening at: http://0.0.0.0:8000 (10)"),
                         (9, 10, "WORKER TIMEOUT (pid:11)")])
    text = restart_history.unsettled(log, [{"pid": 10, "age": 12}], NOON + 12, 15)
    assert text == "WORKER TIMEOUT (pid:11), logged 3 s before the window"
    assert restart_history.unsettled(log, [{"pid": 10, "age": 40}], NOON + 40, 15) is None   # long ago: watch
    assert restart_history.unsettled(log, [{"pid": 99, "age": 2}], NOON + 12, 15) is None    # another master's


def test_masters_restarted_twice_from_outside_are_already_unstable_and_once_is_not():
    lines = [(0, 10, "Starting gunicorn 25.3.0"), (0, 10, "Listening at: http://0.0.0.0:8000 (10)"),
             (8, 20, "Starting gunicorn 25.3.0"), (9, 10, "Handling signal: term"), (9, 10, "Shutting down: Master")]
    assert restart_history.unsettled(unsettled_log(lines), [{"pid": 20, "age": 2}], NOON + 10, 15) is None
    lines += [(16, 30, "Starting gunicorn 25.3.0"), (17, 20, "Handling signal: term"), (17, 20, "Shutting down: Master")]
    text = restart_history.unsettled(unsettled_log(lines), [{"pid": 30, "age": 2}], NOON + 18, 15)
    assert text.startswith("the log already shows the masters restarted from outside: restarted 2 times in 16 s")


def test_masters_that_could_not_boot_twice_are_a_crash_loop_already():
    lines = [(0, 10, "Starting gunicorn 25.3.0"), (1, 10, "Shutting down: Master"), (1, 10, "Reason: Worker failed to boot."),
             (3, 20, "Starting gunicorn 25.3.0"), (4, 20, "Shutting down: Master"), (4, 20, "Reason: Worker failed to boot.")]
    text = restart_history.unsettled(unsettled_log(lines), [], NOON + 5, 15)
    assert text == "the log already shows a crash loop: 2 masters could not boot the app in the last 4 s"
    assert restart_history.unsettled(unsettled_log(lines[:3]), [], NOON + 5, 15) is None


def test_a_running_master_that_handled_sigterm_is_a_restart_underway_until_it_shuts_down():
    lines = [(0, 10, "Starting gunicorn 25.3.0"), (0, 10, "Listening at: http://0.0.0.0:8000 (10)"),
             (9, 10, "Handling signal: term")]
    gens = unsettled_log(lines)["generations"]
    assert restart_history.restart_underway(gens, {10}, NOON + 11) == \
        "master 10 handled SIGTERM 2 s ago and has not shut down yet"
    assert restart_history.restart_underway(gens, set(), NOON + 11) is None      # gone without a line: over
    assert restart_history.restart_underway(gens, {10}, NOON + 9 + restart_history.UNDERWAY + 1) is None  # stuck, not a restart
    gens = unsettled_log(lines + [(10, 10, "Shutting down: Master")])["generations"]
    assert restart_history.restart_underway(gens, {10}, NOON + 11) is None      # it logged its end


def test_a_running_master_that_does_not_listen_yet_is_a_restart_underway_until_it_listens():
    lines = [(0, 10, "Starting gunicorn 25.3.0"), (0, 10, "Listening at: http://0.0.0.0:8000 (10)"),
             (5, 10, "Handling signal: term"), (5, 10, "Shutting down: Master"), (6, 20, "Starting gunicorn 25.3.0")]
    gens = unsettled_log(lines)["generations"]
    assert restart_history.restart_underway(gens, {20}, NOON + 7) == "master 20 started 1 s ago and does not listen yet"
    gens = unsettled_log(lines + [(7, 20, "Listening at: http://0.0.0.0:8000 (20)")])["generations"]
    assert restart_history.restart_underway(gens, {20}, NOON + 8) is None       # it serves: the restart is done
    # A settled master's old history is no restart underway.
    assert restart_history.restart_underway(gens, {20}, NOON + 600) is None
