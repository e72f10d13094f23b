"""stabilize.yml beside other runners: with several real supervisords it writes its program only into the app's own
(or refuses and says what to set), never into another app's; and it stops the runner behind a restart loop (a bash
keep-alive loop, a second supervisord program of the app) so that nothing starts a second master afterwards - but
never a shell that runs anything besides the app. Every process a test starts is stopped by its PID.
"""

import os
import re
import subprocess

import psutil

from doctor_run import PYTHON, make_app
from gunicorn_service import free_port
from test_stabilize import (alive, assert_idempotent, listening_pid, recap, serves, stabilize, stabilize_report,
                            stable_200, tree_digest, wait_for)
# The fixture, used by name.
from test_stabilize import host  # noqa: F401  pylint: disable=unused-import


def program_pid(sup, name):
    status = subprocess.run(sup["ctl"] + ["status", name], stdout=subprocess.PIPE, text=True, check=False).stdout
    m = re.search(r"RUNNING\s+pid (\d+)", status)
    return int(m.group(1)) if m else None


def foreign_supervisord(host, supervisords):
    """A supervisord running another checkout's program of the same name and app spec (another app)."""
    sup = supervisords("foreign-supervisor")
    other_dir = make_app(host.tmp / "other-checkout")
    other_port = free_port()
    (sup["conf_dir"] / "agentlocator.conf").write_text(
        "[program:agentlocator]\ncommand=%s -m gunicorn AgentLocator.main:app -b 127.0.0.1:%d --no-control-socket\n"
        "directory=%s\nautorestart=true\nstopasgroup=true\n" % (PYTHON, other_port, other_dir))
    subprocess.run(sup["ctl"] + ["update"], stdout=subprocess.DEVNULL, check=True)
    wait_for(lambda: program_pid(sup, "agentlocator") and listening_pid(other_port), 20, "the foreign program")
    return sup


# --- which supervisord -----------------------------------------------------------------------------------
def test_the_program_goes_into_the_apps_supervisord_never_into_another_apps(host, tmp_path, supervisords):
    foreign = foreign_supervisord(host, supervisords)
    ours = supervisords("our-supervisor")
    # The app's own supervisord has its program, stopped: no master of the app runs.
    (ours["conf_dir"] / "agentlocator.conf").write_text(
        "[program:agentlocator]\ncommand=%s -m gunicorn AgentLocator.main:app -b 0.0.0.0:%d\ndirectory=%s\n"
        "autostart=false\n" % (PYTHON, free_port(), host.app_dir))
    subprocess.run(ours["ctl"] + ["update"], stdout=subprocess.DEVNULL, check=True)
    foreign_before, foreign_master = tree_digest(foreign["conf_dir"]), program_pid(foreign, "agentlocator")

    out = stabilize(tmp_path, host.vars())

    assert recap(out)["failed"] == 0
    stable_200(host.port)
    master = program_pid(ours, "agentlocator")
    assert master and serves(master, host.port) and psutil.Process(master).parent().pid == ours["pid"]
    assert tree_digest(foreign["conf_dir"]) == foreign_before, "stabilize wrote into another app's supervisord"
    assert program_pid(foreign, "agentlocator") == foreign_master, "the other app's program was restarted or stopped"
    assert stabilize_report(tmp_path)["service"]["manager"] == "supervisord"


def test_several_supervisords_and_none_the_apps_is_refused_with_what_to_set(host, tmp_path, supervisords):
    foreign = foreign_supervisord(host, supervisords)
    empty = supervisords("empty-supervisor")
    foreign_before, empty_before = tree_digest(foreign["conf_dir"]), tree_digest(empty["conf_dir"])
    foreign_master = program_pid(foreign, "agentlocator")

    refused = stabilize(tmp_path, host.vars(), check=False)

    assert recap(refused)["failed"] == 1
    assert "supervisords run" in refused and "doctor_supervisord_conf" in refused
    assert tree_digest(foreign["conf_dir"]) == foreign_before and tree_digest(empty["conf_dir"]) == empty_before
    assert program_pid(foreign, "agentlocator") == foreign_master
    assert not listening_pid(host.port)

    # What the error says to set works: the program goes into the supervisord named, and only there.
    out = stabilize(tmp_path, host.vars(doctor_supervisord_conf=str(empty["conf"])))
    assert recap(out)["failed"] == 0
    master = program_pid(empty, "agentlocator")
    assert master and serves(master, host.port)
    assert tree_digest(foreign["conf_dir"]) == foreign_before
    assert program_pid(foreign, "agentlocator") == foreign_master and alive(foreign_master)


# --- the runner behind a restart loop ----------------------------------------------------------------------
def keepalive_loop(host, port, extra=""):
    """A bash keep-alive loop in a script file (its command line names neither the app nor a loop), started
    with nohup like a hand-made runner: it starts the app's master again a second after it exits."""
    script = host.tmp / ("keepalive-%d.sh" % port)
    script.write_text("%swhile true; do %s -m gunicorn AgentLocator.main:app -b 0.0.0.0:%d --no-control-socket; "
                      "sleep 1; done\n" % (extra, PYTHON, port))
    pid = host.spawn(["nohup", "bash", str(script)], host.app_dir, out=host.tmp / ("keepalive-%d.out" % port))
    wait_for(lambda: listening_pid(port), 20, "the loop's master")
    return pid


def runs_gunicorn(argv):
    """gunicorn itself (`python -m gunicorn`, the gunicorn script), not a path that merely holds the word (a CI
    checkout named gunicorn_doctor runs supervisord from .../gunicorn_doctor/.venv/bin/supervisord)."""
    head = list(argv[:3])
    return "gunicorn" in [os.path.basename(a) for a in head] or any(
        a == "-m" and b == "gunicorn" for a, b in zip(head, head[1:]))


def app_masters(app_dir):
    found = []
    for proc in psutil.process_iter(["pid", "cwd", "cmdline", "status"]):
        argv = proc.info["cmdline"] or []
        if proc.info["cwd"] == str(app_dir) and runs_gunicorn(argv) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            try:
                if not runs_gunicorn(proc.parent().cmdline()):
                    found.append(proc.info["pid"])
            except psutil.Error:
                continue
    return found


def assert_one_master_stays(host, seconds=3.0):
    """Longer than the loop's restart delay: nothing starts a second master."""
    stable_200(host.port, seconds)
    assert app_masters(host.app_dir) == [host.service_pid()]


def test_a_keepalive_loop_on_the_services_port_is_stopped_and_nothing_restarts(host, tmp_path):
    loop = keepalive_loop(host, host.port)
    loop_master = listening_pid(host.port)

    out = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))

    assert recap(out)["failed"] == 0
    assert not alive(loop) and not alive(loop_master)
    assert_one_master_stays(host)
    stopped = [a for a in stabilize_report(tmp_path)["actions"] if a["target"].startswith("%d " % loop)]
    assert stopped and "shell loop" in stopped[0]["reason"]
    assert_idempotent(stabilize(tmp_path, host.vars(doctor_service_manager="standalone")))


def test_a_keepalive_loop_on_another_port_beside_the_service_is_stopped(host, tmp_path):
    first = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))
    assert recap(first)["failed"] == 0
    service = host.service_pid()
    loop = keepalive_loop(host, free_port())

    out = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))

    assert recap(out)["failed"] == 0 and recap(out)["changed"] > 0
    assert not alive(loop)
    assert host.service_pid() == service and serves(service, host.port)
    assert_one_master_stays(host)
    assert_idempotent(stabilize(tmp_path, host.vars(doctor_service_manager="standalone")))


def test_a_loop_that_also_runs_another_program_is_never_stopped_and_is_named(host, tmp_path):
    # The loop also keeps a program that is not the app (a sleeping helper): not the app's runner alone.
    loop = keepalive_loop(host, free_port(), extra="sleep 600 &\n")
    helper = next(c.pid for c in psutil.Process(loop).children() if c.name() == "sleep")
    masters = app_masters(host.app_dir)

    refused = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"), check=False)

    assert recap(refused)["failed"] == 1
    assert str(loop) in refused and "also runs" in refused
    assert alive(loop) and alive(helper) and app_masters(host.app_dir) == masters


def test_a_second_supervisord_program_of_the_app_is_disabled_and_the_managed_one_kept(host, tmp_path, supervisord):
    program = "[program:%s]\ncommand=%s -m gunicorn AgentLocator.main:app -b 0.0.0.0:%d --no-control-socket\n" \
              "directory=%s\nautorestart=true\nstopasgroup=true\n"
    second_port = free_port()
    (supervisord["conf_dir"] / "agentlocator.conf").write_text(program % ("agentlocator", PYTHON, host.port, host.app_dir))
    second_file = supervisord["conf_dir"] / "agentlocator-old.conf"
    second_file.write_text(program % ("agentlocator-old", PYTHON, second_port, host.app_dir))
    subprocess.run(supervisord["ctl"] + ["update"], stdout=subprocess.DEVNULL, check=True)
    wait_for(lambda: program_pid(supervisord, "agentlocator") and program_pid(supervisord, "agentlocator-old"), 20,
             "both programs RUNNING")
    second_master = program_pid(supervisord, "agentlocator-old")

    out = stabilize(tmp_path, host.vars())

    assert recap(out)["failed"] == 0
    assert not second_file.exists() and (supervisord["conf_dir"] / "agentlocator-old.conf.disabled-by-gunicorn-doctor").exists()
    assert not alive(second_master) and program_pid(supervisord, "agentlocator-old") is None
    master = program_pid(supervisord, "agentlocator")
    assert master and serves(master, host.port)
    stable_200(host.port, 3.0)
    assert not listening_pid(second_port) and app_masters(host.app_dir) == [master]
    disabled = [a for a in stabilize_report(tmp_path)["actions"] if a["action"] == "disabled supervisord program"]
    assert disabled and disabled[0]["target"].startswith("agentlocator-old (")
    assert_idempotent(stabilize(tmp_path, host.vars()))
    assert program_pid(supervisord, "agentlocator") == master
