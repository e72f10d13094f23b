"""A supervisord program whose command is a script that runs gunicorn without `exec` (issue 13, a shape found by
trying): supervisord's stop signals the shell only, so `supervisorctl restart` leaves the old gunicorn master
behind, reparented to pid 1 and still holding $PORT, while the program's new masters fail with "Connection in use".
/healthz stays 200 - from a master nothing supervises. Real supervisord, real bash, real gunicorn."""

import subprocess

import psutil

from doctor_run import PYTHON, cause, cause_ids, diagnose
from test_stabilize import alive, assert_idempotent, healthz, listening_pid, stabilize, stabilize_report, wait_for
from test_stabilize import host  # noqa: F401  pylint: disable=unused-import
from test_stabilize_runners import program_pid


def program_behind_a_script(host, supervisord):
    """[program:voice] runs `bash start.sh`, which runs gunicorn as its child; restarted once, it leaves its first
    master behind. -> the pid of that master."""
    script = host.tmp / "start.sh"
    script.write_text("#!/bin/bash\ncd %s\n%s -m gunicorn AgentLocator.main:app -w 2 -b 0.0.0.0:$PORT "
                      "--no-control-socket --error-logfile %s\n" % (host.app_dir, PYTHON, host.log))
    (supervisord["conf_dir"] / "voice.conf").write_text(
        "[program:voice]\ncommand=bash %s\nenvironment=PORT=\"%d\"\nautorestart=true\nstartsecs=1\n"
        "stdout_logfile=%s\nredirect_stderr=true\n" % (script, host.port, host.tmp / "voice.out"))
    subprocess.run(supervisord["ctl"] + ["update"], stdout=subprocess.DEVNULL, check=True)
    wait_for(lambda: healthz(host.port) == 200 and program_pid(supervisord, "voice"), 30, "the program serving")
    first = psutil.Process(program_pid(supervisord, "voice")).children()[0].pid   # the shell's gunicorn master
    host.started.append(first)   # stopped by PID at the end whatever happens
    subprocess.run(supervisord["ctl"] + ["restart", "voice"], stdout=subprocess.DEVNULL, check=False)
    # The restart left it behind: reparented, still listening, and the program's new masters cannot bind.
    wait_for(lambda: psutil.Process(first).ppid() == 1 and host.log.read_text().count("Connection in use") >= 2, 30,
             "the first master left behind and the program failing to bind")
    return first


def test_a_master_left_behind_by_its_program_is_named_and_stabilize_stops_it_for_good(host, tmp_path, supervisord):
    left = program_behind_a_script(host, supervisord)

    (tmp_path / "before").mkdir()
    report, dummy = diagnose(tmp_path / "before", {"doctor_chdir": str(host.app_dir), "doctor_port": host.port,
                                                   "doctor_log_file": str(host.log)})
    assert healthz(host.port) == 200   # what a user sees by hand
    assert report["verdict"] == "degraded" and "multiple_runners" in cause_ids(report, "fail"), report["causes"]
    found = cause(report, "multiple_runners")
    text = " ".join(found["evidence"])
    assert "master %d" % left in text and "left behind by supervisord [program:voice]" in text
    assert "stopasgroup=true" in text
    assert "pid %d started by detached" % left in found["remedy"]   # the one to stop, not the program's master

    done = stabilize(tmp_path, host.vars(doctor_service_name="voice", doctor_port=host.port))
    record = stabilize_report(tmp_path)
    assert record["result"] == "stabilized", record["summary"]
    assert not alive(left)
    serving = listening_pid(host.port)
    assert healthz(host.port) == 200 and serving != left
    # What serves $PORT is the program's: its process is among the parents (or is it).
    assert program_pid(supervisord, "voice") in [p.pid for p in psutil.Process(serving).parents()] + [serving]
    assert "left behind by supervisord" in done or "started by detached" in done

    assert_idempotent(stabilize(tmp_path, host.vars(doctor_service_name="voice", doctor_port=host.port)))
    assert listening_pid(host.port) == serving
