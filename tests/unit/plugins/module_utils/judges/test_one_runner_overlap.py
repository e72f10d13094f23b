"""Two masters at once from one runner that restarts them (it starts the next master beside the old one, then
SIGTERMs the old): the overlap of one restart is periodic_sigterm, not also multiple_runners. Two runners, or one
runner that keeps two masters without restarting them, still are. Log lines in gunicorn 25.3's words; facts as
probe_host returns them."""

import pytest

from test_verdict import (PORT, cause, check, diagnose, healthy_facts, ids, master_fact, restart_loop_log,
                          set_sockets, sock, start_lines, write_log)

LOOP = {"kind": "shell_loop", "pid": 777, "detail": "bash -c while true; do python -m gunicorn AgentLocator.main:app "
        "-b 0.0.0.0:$1 --reuse-port & new=$!; sleep 1.5; kill -TERM $old; old=$new; sleep 6.5; done"}


@pytest.fixture
def facts(tmp_path):
    return healthy_facts(tmp_path)


def overlapping(facts, tmp_path, second_runner=None, log=True):
    """Masters 5033 (9 s old) and 5049 (just started beside it, --reuse-port); with `log`, the log of the loop's two
    earlier restarts."""
    facts["process"]["masters"] = [master_fact(pid=5033, age=9.0, workers=1, runner=dict(LOOP)),
                                   master_fact(pid=5049, age=1.0, workers=1, runner=second_runner or dict(LOOP))]
    facts["system"]["nofile_masters"] = [{"pid": p, "soft": 65536, "hard": 65536} for p in (5033, 5049)]
    set_sockets(facts, [sock("0.0.0.0", PORT, 5033, "master"), sock("0.0.0.0", PORT, 5049, "master")])
    if log:
        write_log(facts, tmp_path, restart_loop_log([5001, 5017, 5033], every=8, first=3600) +
                  start_lines(3600 + 16, 5049, workers=(5057,)))
    return facts


def test_one_loop_overlapping_its_own_restart_is_periodic_sigterm_only(facts, tmp_path):
    report = diagnose(overlapping(facts, tmp_path))
    assert "periodic_sigterm" in ids(report) and "multiple_runners" not in ids(report), ids(report)
    one = check(report, "process", "one runner")
    assert one["status"] == "pass"
    assert one["detail"] == ("note: 2 masters, all started by shell_loop pid 777, which restarts them: the overlap of "
                             "one restart (it starts the next master before it stops the old one), not a second runner "
                             "(see periodic_sigterm)")
    found = cause(report, "periodic_sigterm")
    assert found["evidence"][-1] == one["detail"][len("note: "):]


def test_two_loops_are_multiple_runners_beside_the_restarts(facts, tmp_path):
    report = diagnose(overlapping(facts, tmp_path, second_runner=dict(LOOP, pid=778)))
    assert "periodic_sigterm" in ids(report) and "multiple_runners" in ids(report), ids(report)
    assert check(report, "process", "one runner")["status"] == "fail"


def test_one_loop_that_keeps_two_masters_without_restarting_them_is_multiple_runners(facts, tmp_path):
    report = diagnose(overlapping(facts, tmp_path, log=False))
    assert "multiple_runners" in ids(report) and "periodic_sigterm" not in ids(report), ids(report)


def test_two_programs_of_one_supervisord_are_two_runners(facts, tmp_path):
    program = {"kind": "supervisord", "pid": 90, "program": "voice", "detail": "/usr/bin/python /usr/bin/supervisord"}
    facts = overlapping(facts, tmp_path, second_runner=dict(program, program="voice2"))
    facts["process"]["masters"][0]["runner"] = dict(program)
    report = diagnose(facts)
    assert "multiple_runners" in ids(report), ids(report)
