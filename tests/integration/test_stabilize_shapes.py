"""stabilize.yml on a service whose settings come from GUNICORN_CMD_ARGS (issue 13 point 7): the new runner keeps
the variable (a supervisord program's environment=, the env file the standalone runner reads), the command line
overrides only what must change (the bind) and the report lists it; the new master's effective settings show what
was kept. A master started by hand with the variable in its environment only is refused, and nothing changes.
Real supervisord, real gunicorn, the real playbook; every process a test starts is stopped by its PID."""

import json
import subprocess

import jsonschema
import psutil

from doctor_run import PYTHON, schema
from gunicorn_service import free_port
from test_stabilize import (alive, assert_idempotent, listening_pid, recap, serves, stabilize, stabilize_report, stable_200,
                            wait_for)
from test_stabilize_runners import program_pid
# The fixture, used by name.
from test_stabilize import host  # noqa: F401  pylint: disable=unused-import

CMD_ARGS = "--timeout 45 --workers 2 -b 0.0.0.0:%d"
TOKEN = "tok-4f1c9e0b7a"


def after_settings(tmp_path):
    """The "after" diagnosis' effective settings -> {key: (value, source)} (validated against the contract)."""
    report = json.loads((tmp_path / "reports" / "target.json").read_text())
    jsonschema.validate(report, schema())
    return dict((k, (v["value"], v["source"])) for k, v in report["settings"]["values"].items())


def assert_cmd_args_kept(tmp_path, master, port, cmd_args):
    """The new master reads GUNICORN_CMD_ARGS: its --timeout and --workers are in force, its -b is overridden."""
    proc = psutil.Process(master)
    assert proc.environ().get("GUNICORN_CMD_ARGS") == cmd_args
    argv = proc.cmdline()
    assert "-w" not in argv and "--timeout" not in argv and argv[argv.index("-b") + 1] == "0.0.0.0:%d" % port
    wait_for(lambda: len(proc.children()) == 2, 20, "the two workers GUNICORN_CMD_ARGS asks for")
    found = after_settings(tmp_path)
    assert found["timeout"] == (45, "GUNICORN_CMD_ARGS") and found["workers"] == (2, "GUNICORN_CMD_ARGS")
    assert found["bind"] == (["0.0.0.0:%d" % port], "command line")
    shape = stabilize_report(tmp_path)["shape"]
    assert shape["cmd_args"] is True
    assert [(k["setting"], k["value"], k["source"]) for k in shape["kept"]] == [
        ("workers", 2, "GUNICORN_CMD_ARGS"), ("timeout", 45, "GUNICORN_CMD_ARGS")]
    return shape


def test_a_supervisord_program_with_gunicorn_cmd_args_keeps_them_and_overrides_only_the_bind(host, tmp_path,
                                                                                             supervisord):
    wrong = free_port()
    cmd_args = CMD_ARGS % wrong
    (supervisord["conf_dir"] / "agentlocator.conf").write_text(
        # --graceful-timeout and -e on the old command line: the canonical command does not carry them (named).
        "[program:agentlocator]\ncommand=%s -m gunicorn AgentLocator.main:app --graceful-timeout 5 -e API_TOKEN=%s "
        "--error-logfile %s\ndirectory=%s\n"
        "environment=PORT=\"%d\",GUNICORN_CMD_ARGS=\"%s\"\nautorestart=true\nstopasgroup=true\n"
        % (PYTHON, TOKEN, host.log, host.app_dir, host.port, cmd_args))
    subprocess.run(supervisord["ctl"] + ["update"], stdout=subprocess.DEVNULL, check=True)
    wait_for(lambda: listening_pid(wrong), 20, "the program on GUNICORN_CMD_ARGS' port")

    out = stabilize(tmp_path, host.vars())

    assert recap(out)["failed"] == 0
    stable_200(host.port)
    master = program_pid(supervisord, "agentlocator")
    assert master and serves(master, host.port) and not listening_pid(wrong)
    shape = assert_cmd_args_kept(tmp_path, master, host.port, cmd_args)
    assert [(o["setting"], o["source"], o["was"], o["now"]) for o in shape["overrides"]] == [
        ("bind", "GUNICORN_CMD_ARGS", ["0.0.0.0:%d" % wrong], ["0.0.0.0:%d" % host.port]),
        ("graceful_timeout", "command line", 5, 30), ("raw_env", "command line", ["API_TOKEN"], [])]
    assert "overrides bind (GUNICORN_CMD_ARGS)" in out and "overrides graceful_timeout (command line)" in out
    # The -e value may be a secret: named by its variable only, on the console and in the report.
    assert TOKEN not in out and TOKEN not in (tmp_path / "reports" / "target.stabilize.json").read_text()

    again = stabilize(tmp_path, host.vars())
    assert_idempotent(again)
    assert program_pid(supervisord, "agentlocator") == master


def test_gunicorn_cmd_args_only_in_a_hand_started_master_are_refused_then_kept_from_the_env_file(host, tmp_path):
    wrong = free_port()
    cmd_args = CMD_ARGS % wrong
    by_hand = host.spawn([PYTHON, "-m", "gunicorn", "AgentLocator.main:app", "--no-control-socket"], host.app_dir,
                         env={"PORT": str(host.port), "GUNICORN_CMD_ARGS": cmd_args})
    wait_for(lambda: listening_pid(wrong), 20, "the hand-started master")
    started = psutil.Process(by_hand).create_time()

    refused = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"), check=False)

    assert recap(refused)["failed"] == 1
    assert "GUNICORN_CMD_ARGS is set in the environment of the running master" in refused
    assert "put it in doctor_env_file" in refused
    assert psutil.Process(by_hand).create_time() == started and listening_pid(wrong)
    assert not (host.service_dir / "run.sh").exists() and not listening_pid(host.port)
    assert stabilize_report(tmp_path)["result"] == "refused"

    # What the refusal says to do: the env file the standalone runner reads holds it now.
    with open(str(host.env_file), "a") as env:
        env.write('GUNICORN_CMD_ARGS="%s"\n' % cmd_args)
    out = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))
    assert recap(out)["failed"] == 0
    stable_200(host.port)
    master = host.service_pid()
    assert serves(master, host.port) and not alive(by_hand)
    assert [o["setting"] for o in assert_cmd_args_kept(tmp_path, master, host.port, cmd_args)["overrides"]] == ["bind"]

    again = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))
    assert_idempotent(again)
    assert host.service_pid() == master
