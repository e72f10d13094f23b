"""What the clean-up would do, read off real processes and files (module_utils/stabilize/clean_up.py): nothing for a
service whose master is kept and whose log it writes (the idempotent run skips the clean-up), and each stray, old
log, foreign port holder and refused log otherwise - the same choices stop_strays makes."""

import os
import sys
import time

import psutil

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import clean_up

APP = "AgentLocator.main:app"
# A stand-in for gunicorn (its command line, not its server): appends to its --error-logfile, holds it open, sleeps.
FAKE_GUNICORN = ("import sys, time\nlog = open(sys.argv[sys.argv.index('--error-logfile') + 1], 'a')\n"
                 "log.write('booted\\n')\nlog.flush()\nopen('ready', 'w').close()\ntime.sleep(120)\n")


def wait_for(predicate, what, timeout=10):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.02)


def service_of(tmp_path, procs):
    """The app's checkout and its running master, which writes tmp_path/app.log -> (app dir, log, service found)."""
    app = tmp_path / "app"
    (app / "AgentLocator").mkdir(parents=True)
    (app / "AgentLocator" / "__init__.py").write_text("")
    (app / "AgentLocator" / "main.py").write_text("import time\ntime.sleep(120)\n")
    (app / "gunicorn.py").write_text(FAKE_GUNICORN)
    log = tmp_path / "app.log"
    master = procs([sys.executable, "-m", "gunicorn", APP, "--error-logfile", str(log)], app)
    wait_for((app / "ready").exists, "the master's log")
    started = psutil.Process(master.pid).create_time()
    return app, log, {"manager": "standalone", "pid": master.pid, "run_as": None, "started": started}


def survey(app, service, tmp_path, port=None, paths=(), patterns=()):
    p = {"app": APP, "chdir": str(app), "name": "agentlocator", "unit_dir": str(tmp_path / "units"),
         "clean": {"port": port}, "archive": {"paths": list(paths), "patterns": list(patterns),
                                              "archive_dir": str(tmp_path / "archive")}}
    return clean_up.survey(psutil, p, service, None)


def test_nothing_is_left_for_a_kept_master_that_writes_its_log(tmp_path, procs):
    app, log, service = service_of(tmp_path, procs)
    found = survey(app, service, tmp_path, paths=[str(log), str(app / "nohup.out")], patterns=[str(log) + ".*"])
    assert found == {"port": None, "left": []}


def test_a_stray_an_old_log_and_a_foreign_port_holder_are_each_left(tmp_path, procs):
    app, log, service = service_of(tmp_path, procs)
    dev = procs([sys.executable, "-m", "AgentLocator.main"], app)
    old = tmp_path / "app.log.1"
    old.write_text("an incident of an earlier run\n")
    os.utime(str(old), (service["started"] - 60, service["started"] - 60))
    holder = procs([sys.executable, "-m", "http.server", "-b", "127.0.0.1", "0"], tmp_path)
    wait_for(lambda: psutil.Process(holder.pid).net_connections("tcp"), "the port holder's socket")
    port = psutil.Process(holder.pid).net_connections("tcp")[0].laddr[1]
    wait_for(lambda: len(psutil.Process(dev.pid).cmdline()) > 2, "the stray's command line")

    found = survey(app, service, tmp_path, port=port, paths=[str(log)], patterns=[str(log) + ".*"])

    kinds = dict((item["kind"], item["what"]) for item in found["left"])
    assert found["port"] == port and sorted(kinds) == ["log", "port_holder", "stop"]
    assert kinds["stop"].startswith("%d (" % dev.pid) and "AgentLocator.main" in kinds["stop"]
    assert kinds["log"] == str(old)
    assert kinds["port_holder"].startswith("%d (" % holder.pid) and "not this app" in kinds["port_holder"]


def test_a_log_that_is_no_plain_file_is_left_for_the_clean_up_to_name(tmp_path, procs):
    app, log, service = service_of(tmp_path, procs)
    (tmp_path / "nohup.out").symlink_to("/etc/passwd")
    found = survey(app, service, tmp_path, paths=[str(log), str(tmp_path / "nohup.out")])
    assert found["left"] == [{"kind": "refused_log", "what": "%s: a symlink: not followed" % (tmp_path / "nohup.out")}]
