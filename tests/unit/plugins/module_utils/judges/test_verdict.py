"""plugins/module_utils/judges/verdict.py: facts -> report.

`healthy_facts()` builds what host_probe.probe_host returns for a healthy sync service (systemd,
master 4242 listening on 0.0.0.0:8123, /healthz 200). Each fault test changes only the facts the
fault would change on a real host, and every report goes through `diagnose()`, which checks the
contract's invariants (schema, stable ids, layer order, failed_layer, cause order).
"""

import copy
import datetime
import json
import re
from pathlib import Path

import jsonschema
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn_settings
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import verdict
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain.causes import CAUSES, LAYERS, SYMPTOMS, render_remedy
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import logfile

UNIT_DIR = Path(__file__).resolve().parents[3]
DOCS = UNIT_DIR.parents[1] / "docs"                # the contract and its schema, shipped with the collection
SCHEMA = json.loads((DOCS / "report.schema.json").read_text())

LADDER = ["port", "process", "listen", "healthz", "boot", "system", "eventlet", "voice", "external"]
# The contract's "Stable cause ids" (ids may be added; none is renamed or removed).
STABLE_IDS = """
port_unset, port_invalid, wrong_port, bind_loopback_only, not_listening, proxy_backend_down, front_door_down,
multiple_runners, periodic_sigterm, stray_processes,
healthz_missing, healthz_error, healthz_flapping,
boot_exception, slow_boot, dev_server_at_import, worker_timeout,
disk_full, fd_limit_low, memory_pressure, oom_killed,
eventlet_incompatible, eventlet_env_missing, eventlet_env_invalid, async_lib_conflict,
monkey_patch_misplaced,
missing_env, gcp_credentials_missing,
twiml_invalid, twiml_double_slash, status_callback_not_204,
ws_handshake_failed, ws_subprotocol_missing, media_format_invalid,
external_unreachable
""".replace(",", " ").split()

APP = "AgentLocator.main:app"
CHDIR = "/srv/app"
PYTHON = "/srv/app/.venv/bin/python"
ENV_FILE = "/etc/agentlocator/agentlocator.env"
PORT = 8123
MASTER = 4242
T0 = logfile.parse_time("2026-11-25 11:00:00 +0000")   # the healthy master started here, an hour ago
MiB, GiB = 1 << 20, 1 << 30
CANONICAL = ("cd /srv/app && PORT=8123 /srv/app/.venv/bin/python -m gunicorn AgentLocator.main:app -k sync -w 2 "
             "-b 0.0.0.0:$PORT --timeout 60 --keep-alive 30 --log-level debug --capture-output "
             "--access-logfile - --error-logfile -")


# --- fact builders ------------------------------------------------------------------------------------
def at(offset):
    """gunicorn's log time for T0 + offset seconds."""
    return datetime.datetime.fromtimestamp(T0 + offset, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000")


def gline(offset, pid, message, level="INFO"):
    return "[%s] [%d] [%s] %s" % (at(offset), pid, level, message)


def start_lines(offset, master, bind="0.0.0.0:%d" % PORT, workers=(), worker_class="sync"):
    lines = [gline(offset, master, "Starting gunicorn 25.3.0"),
             gline(offset, master, "Listening at: http://%s (%d)" % (bind, master)),
             gline(offset, master, "Using worker: %s" % worker_class)]
    return lines + [gline(offset, w, "Booting worker with pid: %d" % w) for w in workers]


def stop_lines(offset, master):
    return [gline(offset, master, "Handling signal: term"),
            gline(offset, master + 8, "Worker exiting (pid: %d)" % (master + 8)),
            gline(offset, master, "Shutting down: Master")]


HEALTHY_LOG = start_lines(0, MASTER, workers=(4250, 4251)) + [
    '127.0.0.1 - - [25/Nov/2026:11:59:58 +0000] "GET /healthz HTTP/1.1" 200 16 "-" "sre.gunicorn_doctor"']


def write_log(facts, tmp_path, lines):
    """Write a gunicorn log and read it back with the real probe (scan_log + parse_time)."""
    path = tmp_path / "gunicorn.log"
    path.write_text("".join(line + "\n" for line in lines))
    facts["log"] = logfile.collect(str(path))
    facts["inputs"]["log_file"] = str(path)
    return facts


def master_fact(pid=MASTER, age=3600.0, bind="0.0.0.0:%d" % PORT, workers=2, timeout=30, worker_class="sync",
                runner=None):
    argv = [PYTHON, "-m", "gunicorn", APP, "-k", worker_class, "-w", str(workers), "-b", bind,
            "--timeout", str(timeout), "--error-logfile", "/var/log/agentlocator/gunicorn.log"]
    found = gunicorn_settings.effective(argv, {}, CHDIR, None)   # no config file in CHDIR: nothing is read
    return {
        "pid": pid, "ppid": 1, "cmdline": " ".join(argv), "cwd": CHDIR, "username": "app", "age": age,
        "settings": found["settings"], "settings_sources": found["sources"], "settings_computed": found["computed"],
        "config_file": found["config_file"], "settings_from": ["its command line", "/proc/%d/environ" % pid],
        "settings_problems": found["problems"],
        "workers": [{"pid": pid + 8 + i, "age": age - 0.5} for i in range(workers)],
        "runner": runner or {"kind": "systemd", "detail": "agentlocator.service", "pid": 1},
        "reason": "app spec %s in its command line, running in %s" % (APP, CHDIR),
    }


def sock(address, port, pid, role, name="python"):
    return {"pid": pid, "name": name, "family": "inet6" if ":" in address else "inet", "address": address,
            "port": port, "app_role": role}


def set_sockets(facts, sockets):
    """What listen.collect returns for these LISTEN sockets."""
    port = facts["port"]["port"]
    facts["listen"] = {"port": port,
                       "on_port": [dict(s) for s in sockets if s["port"] == port],
                       "app_sockets": [dict(s) for s in sockets if s["app_role"]]}
    return facts


BODIES = {200: '{"status":"ok"}\n',
          404: "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>",
          500: "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>"}


def set_healthz(facts, results, interval=0.5, wait_reason=None):
    """results: HTTP statuses, or an error text for a sample that got no HTTP answer."""
    if wait_reason is None:   # what healthz.collect says for an old service / a first answer that is not 200
        wait_reason = "service old enough: one sample suffices" if results[0] == 200 else \
            "no 200 at first: re-sampled for 2 s to tell down from flapping"
    samples = []
    for i, r in enumerate(results):
        if isinstance(r, int):
            samples.append({"status": r, "latency_ms": 2.4, "body": BODIES.get(r, ""), "error": None, "at": i * interval})
        else:
            samples.append({"status": None, "latency_ms": 0.3, "body": "", "error": r, "at": i * interval})
    facts["healthz"] = {"url": "http://127.0.0.1:%d%s" % (facts["port"]["port"], facts["inputs"]["healthz_path"]),
                        "samples": samples, "window_seconds": round(interval * (len(results) - 1), 1),
                        "wait_reason": wait_reason, "elapsed": round(interval * (len(results) - 1), 2)}
    return facts


def set_port(facts, port, source, raw, valid=True):
    facts["port"] = {"port": port, "source": source, "raw": raw, "valid": valid,
                     "candidates": [{"source": source, "value": raw}] if raw is not None else [], "disagree": False}
    return facts


def preload(listening=True, status=200, exited=False, exit_code=None, timed_out=False, dev_server=False,
            seconds=2.1, tail=(), tracebacks=()):
    return {"port": 41234, "command": "-m gunicorn --preload -k sync -w 1 -b 127.0.0.1:41234 --timeout 30 ... " + APP,
            "listening": listening, "healthz_status": status, "listen_seconds": 1.2 if listening else None,
            "exited": exited, "exit_code": exit_code, "timed_out": timed_out, "dev_server": dev_server,
            "seconds": seconds, "output_tail": list(tail), "events": {"events": [], "tracebacks": list(tracebacks)}}


def stop_service(facts):
    """The master is gone: no process, nothing listening, /healthz refused (re-sampled for 2 s), and the
    doctor's spare-port preload boot ran because /healthz was not a 200."""
    facts["process"]["masters"] = []
    facts["system"]["nofile_masters"] = []
    set_sockets(facts, [])
    set_healthz(facts, ["Connection refused"] * 4)
    facts["boot"]["preload_boot"] = preload()
    facts["boot"]["preload_skipped"] = None
    return facts


def healthy_facts(tmp_path):
    facts = {
        "inputs": {"app": APP, "chdir": CHDIR, "python": PYTHON, "env_file": ENV_FILE, "log_file": None,
                   "healthz_path": "/healthz", "stability_window": 15},
        "port": {"port": PORT, "source": "/proc/%d/environ (running master)" % MASTER, "raw": "8123", "valid": True,
                 "candidates": [{"source": "/proc/%d/environ (running master)" % MASTER, "value": "8123"},
                                {"source": ENV_FILE, "value": "8123"}],
                 "disagree": False},
        "process": {"masters": [master_fact()], "strays": []},
        "env_names": ["EVENTLET_HUB", "PATH", "PORT", "PUBLIC_BASE_URL", "TWILIO_AUTH_TOKEN"],
        "env_file_names": ["PORT", "PUBLIC_BASE_URL", "TWILIO_AUTH_TOKEN"],
        "boot": {
            "dry_import": {"python": "3.11.2", "executable": PYTHON, "run_calls": [], "ok": True,
                           "versions": {"gunicorn": "25.3.0", "flask": "3.1.2", "werkzeug": "3.1.3"},
                           "import_seconds": 0.41, "app_type": "flask.app.Flask",
                           "routes": ["/healthz", "/incoming_call", "/static/<path:filename>", "/stream_status",
                                      "/ws/twilio-media"],
                           "healthz_status": 200, "timed_out": False, "seconds": 0.93, "exit_code": 0,
                           "output_tail": []},
            "preload_boot": None, "preload_skipped": "/healthz answered a stable 200", "dev_server_calls": []},
        "system": {
            "disks": [{"path": CHDIR, "mount": "/", "total_bytes": 40 * GiB, "free_bytes": 25 * GiB,
                       "used_pct": 37.5, "inodes_used_pct": 8.2},
                      {"path": "/var/log/agentlocator", "mount": "/var/log", "total_bytes": 2 * GiB,
                       "free_bytes": 1536 * MiB, "used_pct": 25.0, "inodes_used_pct": 1.0}],
            "nofile_masters": [{"pid": MASTER, "soft": 65536, "hard": 65536}],
            "nofile_shell": {"soft": 1048576, "hard": 1048576},
            "memory": {"total_bytes": 4 * GiB, "available_bytes": 2540 * MiB, "available_pct": 62.0,
                       "swap_used_pct": 0.0},
            "top_memory": [{"pid": 4250, "name": "python", "rss_bytes": 142 * MiB},
                           {"pid": 4251, "name": "python", "rss_bytes": 139 * MiB},
                           {"pid": 812, "name": "postgres", "rss_bytes": 96 * MiB}],
            "oom_kernel": [], "oom_kill_count": 0},
        "timings": {"log": 0.001, "process": 0.01, "port": 0.002, "listen": 0.03, "healthz": 0.004,
                    "dry_import": 0.9, "static_scan": 0.003, "system": 0.01, "total": 0.95},
    }
    set_sockets(facts, [sock("0.0.0.0", PORT, MASTER, "master")])
    set_healthz(facts, [200])
    write_log(facts, tmp_path, HEALTHY_LOG)
    return facts


# --- the report and its invariants ----------------------------------------------------------------------
def diagnose(facts, host="web1"):
    """judge() plus every check the contract makes of any report."""
    report = verdict.judge(copy.deepcopy(facts), host)
    jsonschema.Draft202012Validator(SCHEMA).validate(report)
    assert report["host"] == host
    assert [l["name"] for l in report["layers"]] == LADDER
    failing = [l["name"] for l in report["layers"] if l["status"] == "fail"]
    assert report["failed_layer"] == (failing[0] if failing else None)
    # Ladder order, fail before warn within a layer; a symptom after the deepest failing layer that explains it.
    roots = [LADDER.index(c["layer"]) for c in report["causes"] if c["severity"] == "fail" and c["id"] not in SYMPTOMS]
    order = [(max([LADDER.index(c["layer"])] + ([r + 0.5 for r in roots] if c["id"] in SYMPTOMS else [])),
              c["severity"] != "fail") for c in report["causes"]]
    assert order == sorted(order), "causes not in ladder order (fail before warn within a layer, symptoms last)"
    for c in report["causes"]:
        assert c["id"] in STABLE_IDS
        assert c["layer"] == CAUSES[c["id"]]["layer"]
        # render_remedy writes "?" for a value the verdict did not supply; no template has a "?" itself.
        assert "?" not in c["remedy"] and "{" not in c["remedy"], "unfilled remedy: %r" % c["remedy"]
    # A layer fails or warns because of its checks or causes: a cause's severity shows in its layer.
    status = dict((l["name"], l["status"]) for l in report["layers"])
    for c in report["causes"]:
        assert verdict.RANK[status[c["layer"]]] >= verdict.RANK[c["severity"]]
    return report


def ids(report):
    return [c["id"] for c in report["causes"]]


def cause(report, cause_id):
    found = [c for c in report["causes"] if c["id"] == cause_id]
    assert len(found) == 1, "%s: %s" % (cause_id, ids(report))
    return found[0]


def layer(report, name):
    return next(l for l in report["layers"] if l["name"] == name)


def check(report, layer_name, check_name):
    return next(c for c in layer(report, layer_name)["checks"] if c["name"] == check_name)


@pytest.fixture
def facts(tmp_path):
    return healthy_facts(tmp_path)


# --- the healthy service ---------------------------------------------------------------------------------
def test_healthy_service(facts):
    report = diagnose(facts)
    assert report["verdict"] == "healthy"
    assert report["causes"] == []
    assert report["failed_layer"] is None
    assert [(l["name"], l["status"]) for l in report["layers"]] == [
        ("port", "pass"), ("process", "pass"), ("listen", "pass"), ("healthz", "pass"), ("boot", "pass"),
        ("system", "pass"), ("eventlet", "skip"), ("voice", "skip"), ("external", "skip")]
    assert report["port"] == PORT
    assert check(report, "listen", "listening on $PORT")["detail"] == "0.0.0.0:8123 by master 4242"
    assert check(report, "boot", "preload boot")["status"] == "skip"


def test_judge_does_not_modify_the_facts(facts):
    before = json.dumps(facts, sort_keys=True)
    verdict.judge(facts, "web1")
    assert json.dumps(facts, sort_keys=True) == before


def test_judge_layer_matches_judge(facts):
    set_sockets(facts, [sock("127.0.0.1", PORT, MASTER, "master")])
    result, causes = verdict.judge_layer(facts, "listen")
    report = diagnose(facts)
    assert result == layer(report, "listen")
    assert [c["id"] for c in causes] == ["bind_loopback_only"]


def test_old_incidents_before_the_current_master_do_not_count(facts, tmp_path):
    # Yesterday's run timed out a worker and was restarted by a deploy; the current master is an hour old.
    yesterday = -86400
    write_log(facts, tmp_path,
              start_lines(yesterday, 3001, workers=(3009,))
              + [gline(yesterday + 50, 3001, "WORKER TIMEOUT (pid:3009)", "CRITICAL"),
                 gline(yesterday + 51, 3001, "Worker (pid:3009) was sent SIGKILL! Perhaps out of memory?", "ERROR")]
              + stop_lines(-20, 3001) + start_lines(-19, 3100) + stop_lines(-2, 3100)
              + HEALTHY_LOG)
    report = diagnose(facts)
    assert report["verdict"] == "healthy", ids(report)
    assert check(report, "process", "no periodic SIGTERM")["status"] == "pass"


# --- port layer -------------------------------------------------------------------------------------------
def test_port_unset(facts):
    # PORT is set nowhere; the service runs on gunicorn's -b 0.0.0.0:8000 and answers there.
    set_port(facts, 8000, "default", None)
    facts["process"]["masters"] = [master_fact(bind="0.0.0.0:8000")]
    set_sockets(facts, [sock("0.0.0.0", 8000, MASTER, "master")])
    set_healthz(facts, [200])
    report = diagnose(facts)
    assert ids(report) == ["port_unset"]
    c = cause(report, "port_unset")
    assert c["severity"] == "warn"
    assert layer(report, "port")["status"] == "warn"
    assert report["verdict"] == "degraded"
    assert report["failed_layer"] is None
    assert ENV_FILE in c["remedy"] and "8000" in c["remedy"] and "-b 0.0.0.0:$PORT" in c["remedy"]


@pytest.mark.parametrize("runner, where", [
    ({"kind": "systemd", "detail": "agentlocator.service", "pid": 1},
     "Set PORT to the port the platform routes to in Environment= (or the EnvironmentFile= it reads) of the unit "
     "agentlocator.service (then systemctl daemon-reload and restart)"),
    ({"kind": "supervisord", "detail": "/usr/bin/python3 /usr/bin/supervisord -n", "pid": 40},
     "in environment= of the supervisord program that runs it (then supervisorctl update and restart)"),
    ({"kind": "supervisord", "detail": "/usr/bin/python3 /usr/bin/supervisord -n", "pid": 40, "program": "voice"},
     "in environment= of [program:voice] (then supervisorctl update and restart)"),
    ({"kind": "shell_loop", "detail": "bash /srv/app/run-forever.sh", "pid": 41},
     "in the environment of the shell loop that starts it (bash /srv/app/run-forever.sh): export it there"),
])
def test_port_unset_says_where_this_services_runner_takes_port_from(facts, runner, where):
    """No doctor_env_file: the remedy names the runner's own place for PORT, not a generic list."""
    facts["inputs"]["env_file"] = None
    set_port(facts, 8000, "default", None)
    facts["process"]["masters"] = [master_fact(bind="0.0.0.0:8000", runner=runner)]
    set_sockets(facts, [sock("0.0.0.0", 8000, MASTER, "master")])
    set_healthz(facts, [200])
    c = cause(diagnose(facts), "port_unset")
    assert where in c["remedy"], c["remedy"]
    assert "unit Environment=, supervisord environment=" not in c["remedy"]


def test_port_invalid(facts, tmp_path):
    # PORT= (empty) in the env file: `-b 0.0.0.0:${PORT}` makes gunicorn exit at once, again and again.
    set_port(facts, 8000, ENV_FILE, "", valid=False)
    stop_service(facts)
    write_log(facts, tmp_path, HEALTHY_LOG + stop_lines(3500, MASTER)
              + ["Error: '' is not a valid port number."] * 3)
    report = diagnose(facts)
    assert report["verdict"] == "down"
    assert report["failed_layer"] == "port"
    assert ids(report) == ["port_invalid", "not_listening"]
    c = cause(report, "port_invalid")
    assert c["severity"] == "fail"
    assert c["evidence"][0] == "PORT='' in %s" % ENV_FILE
    assert "Error: '' is not a valid port number." in c["evidence"]
    assert "(now '')" in c["remedy"] and ENV_FILE in c["remedy"]
    assert "Error: '' is not a valid port number." in c["remedy"]


def test_port_sources_disagreeing_is_a_note_not_a_cause(facts):
    facts["port"]["candidates"].append({"source": "/etc/systemd/system/agentlocator.service", "value": "9000"})
    facts["port"]["disagree"] = True
    report = diagnose(facts)
    assert report["verdict"] == "healthy"
    assert "agentlocator.service=9000" in check(report, "port", "port sources agree")["detail"]


# --- process layer ----------------------------------------------------------------------------------------
def test_multiple_runners(facts):
    # A deploy script's shell loop starts a second master of the same app (on the next port).
    loop = {"kind": "shell_loop", "pid": 4290,
            "detail": "/bin/sh -c while true; do gunicorn AgentLocator.main:app -b 0.0.0.0:8124; sleep 1; done"}
    facts["process"]["masters"].append(master_fact(pid=4300, age=120.0, bind="0.0.0.0:8124", runner=loop))
    facts["system"]["nofile_masters"].append({"pid": 4300, "soft": 65536, "hard": 65536})
    set_sockets(facts, [sock("0.0.0.0", PORT, MASTER, "master"), sock("0.0.0.0", 8124, 4300, "master")])
    report = diagnose(facts)
    assert ids(report) == ["multiple_runners"]
    c = cause(report, "multiple_runners")
    assert report["failed_layer"] == "process"
    assert report["verdict"] == "degraded"
    assert len(c["evidence"]) == 2
    assert c["evidence"][0].startswith("master 4242 (sync, 2 workers, timeout 30, bind 0.0.0.0:8123)")
    assert "master 4300" in c["evidence"][1] and "shell_loop" in c["evidence"][1]
    assert "pid 4300 started by shell_loop" in c["remedy"]
    assert "4242" not in c["remedy"]      # the master serving $PORT is the one to keep


def test_stray_processes(facts):
    facts["process"]["strays"] = [{"pid": 3100, "ppid": 1, "cmdline": "/srv/app/.venv/bin/python main.py",
                                   "cwd": CHDIR, "age": 86400.0, "kind": "dev_server",
                                   "reason": "runs main.py from the app directory"}]
    set_sockets(facts, [sock("0.0.0.0", PORT, MASTER, "master"), sock("127.0.0.1", 5000, 3100, "stray (dev_server)")])
    report = diagnose(facts)
    assert ids(report) == ["stray_processes"]
    c = cause(report, "stray_processes")
    assert c["severity"] == "warn"
    assert report["verdict"] == "degraded"
    assert report["failed_layer"] is None
    assert c["evidence"] == ["pid 3100 (runs main.py from the app directory, 86400 s old, cwd /srv/app): "
                             "/srv/app/.venv/bin/python main.py"]
    assert "pid 3100" in c["remedy"]


def restart_loop_log(masters, every=12, first=10):
    """A master SIGTERMed every `every` s: Starting/Listening/term/Shutting down, then the current one."""
    lines = []
    for i, pid in enumerate(masters[:-1]):
        t = first + i * every
        lines += start_lines(t - 8, pid, workers=(pid + 8,)) + stop_lines(t, pid)
    return lines + start_lines(first + (len(masters) - 1) * every - 8, masters[-1], workers=(masters[-1] + 8,))


def test_periodic_sigterm_and_flapping_healthz(facts, tmp_path):
    # The platform's health check SIGTERMs the master every 12 s; the current master is 8 s old,
    # so the doctor watched /healthz until it stopped answering.
    facts["process"]["masters"] = [master_fact(pid=5033, age=8.0, workers=1,
                                               runner={"kind": "platform", "pid": 900, "detail": "honcho (honcho start)"})]
    facts["system"]["nofile_masters"] = [{"pid": 5033, "soft": 65536, "hard": 65536}]
    set_sockets(facts, [sock("0.0.0.0", PORT, 5033, "master")])
    write_log(facts, tmp_path, HEALTHY_LOG + stop_lines(3588, MASTER) +
              restart_loop_log([5001, 5017, 5033], first=3600))
    set_healthz(facts, [200] * 8 + ["Connection refused"], wait_reason="master 5033 is only 8.0 s old")
    facts["boot"]["preload_boot"] = preload()
    report = diagnose(facts)
    assert ids(report) == ["periodic_sigterm", "healthz_flapping"]
    assert report["failed_layer"] == "process"
    assert report["verdict"] == "down"
    c = cause(report, "periodic_sigterm")
    assert c["evidence"][0].startswith('3 x "Handling signal: term" in the last 10 min of ')
    assert c["evidence"][0].endswith(": restarted 2 times in 24 s, every 12 s +/- 1 (3 x SIGTERM)")
    assert c["evidence"][1] == ("timeline: 11:00:00 master 4242 started (sync, http://0.0.0.0:8123), 2 worker boots, "
                                "SIGTERM after 60 min, shut down after 60 min")
    assert c["evidence"][2] == ("timeline: 11:59:52 master 5001 started (sync, http://0.0.0.0:8123), 1 worker boot, "
                                "SIGTERM after 8 s, shut down after 8 s")
    assert "no runner that restarts it was found (no shell loop, supervisord program, systemd unit or cron)" in c["evidence"]
    assert c["evidence"][-1] == "the current master 5033 is 8.0 s old, started by platform: honcho (honcho start)"
    assert "platform (honcho (honcho start))" in c["remedy"]
    assert "$PORT=8123" in c["remedy"] and "/healthz" in c["remedy"]
    flap = cause(report, "healthz_flapping")
    assert flap["evidence"][0] == "http://127.0.0.1:8123/healthz answered 200, then Connection refused after 4.0 s"


def test_media_tx_lines_do_not_crowd_out_gunicorns_events(facts, tmp_path):
    # A voice app logs a MEDIA_TX line per 20 ms frame: a few calls after the restarts are hundreds of lines.
    facts["process"]["masters"] = [master_fact(pid=5033, age=8.0, workers=1)]
    set_sockets(facts, [sock("0.0.0.0", PORT, 5033, "master")])
    calls = ["2026-11-25 12:00:%02d,%03d [5041] [INFO] agentlocator: MEDIA_TX streamSid=MZ%032d bytes=160"
             % (i // 50, i % 50 * 20, i // 50) for i in range(logfile.EVENTS_KEPT * 2)]
    write_log(facts, tmp_path, restart_loop_log([5001, 5017, 5033], first=3600) + calls)
    assert facts["log"]["counts"]["media_tx"] == logfile.EVENTS_KEPT * 2
    assert [e["event"] for e in facts["log"]["events"]].count("signal_term") == 2
    assert "media_tx" not in [e["event"] for e in facts["log"]["events"]]
    assert "periodic_sigterm" in ids(diagnose(facts))


def test_single_sigterm_an_hour_ago_with_an_old_master_is_not_periodic(facts, tmp_path):
    write_log(facts, tmp_path, start_lines(-7200, 3001) + stop_lines(-3, 3001) + HEALTHY_LOG)
    report = diagnose(facts)
    assert report["verdict"] == "healthy", ids(report)
    assert check(report, "process", "no periodic SIGTERM")["status"] == "pass"


def test_two_deploy_restarts_then_an_hour_up_is_not_periodic(facts, tmp_path):
    write_log(facts, tmp_path, start_lines(-600, 3001) + stop_lines(-30, 3001) + start_lines(-29, 3100)
              + stop_lines(-2, 3100) + HEALTHY_LOG)
    report = diagnose(facts)
    assert "periodic_sigterm" not in ids(report)
    assert report["verdict"] == "healthy"


def test_no_log_skips_the_sigterm_check(facts):
    facts["log"] = None
    facts["inputs"]["log_file"] = None
    report = diagnose(facts)
    assert report["verdict"] == "healthy"
    assert check(report, "process", "no periodic SIGTERM")["status"] == "skip"


# --- listen layer -----------------------------------------------------------------------------------------
def test_wrong_port(facts, tmp_path):
    # The app hard-codes -b 0.0.0.0:5000; the platform expects 8123.
    facts["process"]["masters"] = [master_fact(bind="0.0.0.0:5000")]
    set_sockets(facts, [sock("0.0.0.0", 5000, MASTER, "master")])
    set_healthz(facts, ["Connection refused"] * 4)
    facts["boot"]["preload_boot"] = preload()
    write_log(facts, tmp_path, start_lines(0, MASTER, bind="0.0.0.0:5000", workers=(4250, 4251)))
    report = diagnose(facts)
    assert ids(report) == ["wrong_port"]
    assert report["failed_layer"] == "listen"
    assert report["verdict"] == "down"
    c = cause(report, "wrong_port")
    assert c["evidence"][0] == ("nothing of the app listens on 8123 (PORT from /proc/4242/environ (running master)); "
                                "master 4242 listens on 0.0.0.0:5000")
    assert "replace -b 0.0.0.0:5000 with -b 0.0.0.0:$PORT (PORT=8123)" in c["remedy"]
    assert c["remedy"].endswith(CANONICAL)


def test_wrong_port_names_who_holds_the_expected_port(facts):
    facts["process"]["masters"] = [master_fact(bind="0.0.0.0:5000")]
    set_sockets(facts, [sock("0.0.0.0", 5000, MASTER, "master"), sock("0.0.0.0", PORT, 777, None, name="nginx")])
    set_healthz(facts, [502])
    facts["boot"]["preload_boot"] = preload()
    report = diagnose(facts)
    assert "wrong_port" in ids(report)
    assert "port 8123 is held by pid 777 (nginx) on 0.0.0.0, not by the app" in cause(report, "wrong_port")["evidence"]


def test_bind_loopback_only(facts):
    facts["process"]["masters"] = [master_fact(bind="127.0.0.1:%d" % PORT)]
    set_sockets(facts, [sock("127.0.0.1", PORT, MASTER, "master")])
    report = diagnose(facts)
    assert ids(report) == ["bind_loopback_only"]
    assert report["verdict"] == "degraded"     # /healthz answers on loopback, where the doctor asks
    assert report["failed_layer"] == "listen"
    c = cause(report, "bind_loopback_only")
    assert c["evidence"] == ["only 127.0.0.1:8123 by master 4242: the platform and proxies cannot reach it",
                             "master 4242 binds 127.0.0.1:8123, from command line"]
    assert ("instead of 127.0.0.1:8123: in ExecStart= of the unit agentlocator.service (then systemctl daemon-reload "
            "and restart) replace -b 127.0.0.1:8123 with -b 0.0.0.0:$PORT") in c["remedy"]
    assert CANONICAL in c["remedy"]


def test_bind_ipv6_loopback_only(facts):
    facts["process"]["masters"] = [master_fact(bind="[::1]:%d" % PORT)]
    set_sockets(facts, [sock("::1", PORT, MASTER, "master")])
    report = diagnose(facts)
    assert ids(report) == ["bind_loopback_only"]


def test_not_listening(facts, tmp_path):
    stop_service(facts)
    write_log(facts, tmp_path, HEALTHY_LOG + stop_lines(3500, MASTER))
    report = diagnose(facts)
    assert ids(report) == ["not_listening"]
    assert report["failed_layer"] == "listen"
    assert report["verdict"] == "down"
    assert layer(report, "process")["status"] == "warn"
    c = cause(report, "not_listening")
    assert c["evidence"][:2] == ["nothing of the app listens on 8123 (PORT from /proc/4242/environ (running master))",
                                 "no gunicorn master of AgentLocator.main:app runs"]
    assert any("Handling signal: term" in e for e in c["evidence"])
    assert 'watch for "Listening at: http://0.0.0.0:8123"' in c["remedy"]
    assert "PORT=8123 /srv/app/.venv/bin/python -m gunicorn AgentLocator.main:app -k sync -w 1 -b 0.0.0.0:$PORT" \
        in c["remedy"]


def test_a_200_from_a_process_that_is_not_the_app_is_not_healthy(facts):
    stop_service(facts)
    set_sockets(facts, [sock("0.0.0.0", PORT, 777, None, name="nginx")])
    set_healthz(facts, [200])
    report = diagnose(facts)
    assert report["verdict"] == "down"
    assert check(report, "healthz", "stable 200")["status"] == "fail"
    assert "from pid 777 (nginx), which is not the app" in check(report, "healthz", "stable 200")["detail"]
    c = cause(report, "not_listening")
    assert "port 8123 is held by pid 777 (nginx) on 0.0.0.0, not by the app" in c["evidence"]


# --- healthz layer ------------------------------------------------------------------------------------------
def test_healthz_missing(facts):
    set_healthz(facts, [404])
    facts["boot"]["dry_import"]["healthz_status"] = 404
    facts["boot"]["dry_import"]["routes"].remove("/healthz")
    facts["boot"]["preload_boot"] = preload(status=404)
    report = diagnose(facts)
    assert "healthz_missing" in ids(report)
    assert report["failed_layer"] == "healthz"
    assert report["verdict"] == "down"
    c = cause(report, "healthz_missing")
    assert c["evidence"][0].startswith("GET http://127.0.0.1:8123/healthz -> 404 body '<!doctype html>")
    assert "GET /healthz route returning 200" in c["remedy"]


def test_healthz_error(facts, tmp_path):
    write_log(facts, tmp_path, HEALTHY_LOG + [
        "[2026-11-25 11:59:58,120] ERROR in app: Exception on /healthz [GET]",
        "Traceback (most recent call last):",
        '  File "/srv/app/.venv/lib/python3.11/site-packages/flask/app.py", line 1511, in wsgi_app',
        "    response = self.full_dispatch_request()",
        '  File "/srv/app/AgentLocator/main.py", line 31, in healthz',
        "    cache.ping()",
        "redis.exceptions.ConnectionError: Error 111 connecting to localhost:6379. Connection refused.",
    ])
    set_healthz(facts, [500])
    facts["boot"]["dry_import"]["healthz_status"] = 500
    facts["boot"]["preload_boot"] = preload(status=500)
    report = diagnose(facts)
    assert "healthz_error" in ids(report)
    assert report["failed_layer"] == "healthz"
    assert report["verdict"] == "down"
    c = cause(report, "healthz_error")
    assert c["evidence"] == [
        "GET http://127.0.0.1:8123/healthz -> 500 body %r" % BODIES[500][:120],
        "last traceback in the log: redis.exceptions.ConnectionError: Error 111 connecting to localhost:6379. "
        "Connection refused."]
    assert "/healthz" in c["remedy"]


@pytest.mark.parametrize("status, expected", [(404, "healthz_missing"), (500, "healthz_error")])
def test_an_app_that_boots_but_fails_healthz_has_no_boot_cause(facts, status, expected):
    set_healthz(facts, [status])
    facts["boot"]["dry_import"]["healthz_status"] = status
    facts["boot"]["preload_boot"] = preload(status=status)
    report = diagnose(facts)
    assert ids(report) == [expected]


def test_healthz_flapping(facts):
    facts["process"]["masters"] = [master_fact(age=5.0)]
    set_healthz(facts, [200, 200, 200, "Connection refused"], wait_reason="master 4242 is only 5.0 s old")
    facts["boot"]["preload_boot"] = preload()
    report = diagnose(facts)
    assert ids(report) == ["healthz_flapping"]
    assert report["failed_layer"] == "healthz"
    assert report["verdict"] == "down"
    assert cause(report, "healthz_flapping")["evidence"][0] == \
        "http://127.0.0.1:8123/healthz answered 200, then Connection refused after 1.5 s"


def test_a_slow_200_on_a_loaded_host_is_healthy_and_the_check_says_how_long_it_was_allowed(facts):
    set_healthz(facts, [200])
    facts["healthz"]["samples"][0]["latency_ms"] = 5400.0
    facts["healthz"]["slow_host"] = {"timeout": 24.0, "why": "run queue 40.2 on 2 CPU(s)"}
    report = diagnose(facts)
    assert report["verdict"] == "healthy" and report["failed_layer"] is None
    detail = check(report, "healthz", "stable 200")["detail"]
    assert "each answer allowed up to 24 s on this loaded host (run queue 40.2 on 2 CPU(s))" in detail
    assert "slowest 5400 ms" in detail


# --- boot layer -----------------------------------------------------------------------------------------------
WORKER_BOOT_FAILURE = start_lines(0, MASTER, workers=(4250,)) + [
    gline(1, 4250, "Exception in worker process", "ERROR"),
    "Traceback (most recent call last):",
    '  File "/srv/app/.venv/lib/python3.11/site-packages/gunicorn/arbiter.py", line 608, in spawn_worker',
    "    worker.init_process()",
    '  File "/srv/app/AgentLocator/main.py", line 3, in <module>',
    "    import x",
    "ModuleNotFoundError: No module named 'x'",
    gline(1, 4250, "Worker exiting (pid: 4250)"),
    gline(1, MASTER, "Worker (pid:4250) exited with code 3.", "ERROR"),
    gline(1, MASTER, "Shutting down: Master"),
    gline(1, MASTER, "Reason: Worker failed to boot."),
]


def test_boot_exception(facts, tmp_path):
    stop_service(facts)
    write_log(facts, tmp_path, WORKER_BOOT_FAILURE)
    facts["boot"]["dry_import"] = {
        "python": "3.11.2", "executable": PYTHON, "run_calls": [], "ok": False, "versions": {"gunicorn": "25.3.0"},
        "import_seconds": 0.05, "timed_out": False, "seconds": 0.4, "exit_code": 0, "output_tail": [],
        "error": {"type": "ModuleNotFoundError", "message": "No module named 'x'", "stage": "import",
                  "frames": ["/srv/app/AgentLocator/main.py:3 in <module>"], "missing_env": None,
                  "module_not_found": "x"}}
    facts["boot"]["preload_boot"] = preload(listening=False, status=None, exited=True, exit_code=1,
                                            tail=["ModuleNotFoundError: No module named 'x'"])
    report = diagnose(facts)
    assert ids(report) == ["boot_exception", "not_listening"]   # the root cause first
    assert report["failed_layer"] == "listen"
    c = cause(report, "boot_exception")
    assert c["evidence"][0] == ("dry import of AgentLocator.main:app in /srv/app/.venv/bin/python: "
                                "ModuleNotFoundError: No module named 'x'")
    assert "  at /srv/app/AgentLocator/main.py:3 in <module>" in c["evidence"]
    assert c["remedy"].endswith(
        "cd /srv/app && /srv/app/.venv/bin/python -c \"import AgentLocator.main as m; a = m.app; print(a.url_map); "
        "print(a.test_client().get('/healthz').status_code)\"")
    assert "Reason: Worker failed to boot." in " ".join(cause(report, "not_listening")["evidence"])


def test_boot_exception_seen_only_by_the_preload_boot(facts):
    # The dry import passes, yet gunicorn cannot boot the app: gunicorn's own words are the evidence.
    stop_service(facts)
    facts["boot"]["preload_boot"] = preload(
        listening=False, status=None, exited=True, exit_code=1,
        tail=["Error: class uri 'eventlet' invalid or not found:", "ImportError: Entry point ('gunicorn.workers', "
              "'eventlet') not found"],
        tracebacks=[{"frames": [], "exception": "ImportError: Entry point ('gunicorn.workers', 'eventlet') not found"}])
    report = diagnose(facts)
    assert ids(report) == ["boot_exception", "not_listening"]   # the root cause first
    c = cause(report, "boot_exception")
    assert c["evidence"][0].endswith(": exited with code 1")
    assert "ImportError: Entry point ('gunicorn.workers', 'eventlet') not found" in c["evidence"]


def test_missing_env_from_the_dry_import(facts, tmp_path):
    stop_service(facts)
    facts["boot"]["dry_import"].update(ok=False, error={
        "type": "KeyError", "message": "'TWILIO_AUTH_TOKEN'", "stage": "import",
        "frames": ["/srv/app/AgentLocator/main.py:9 in <module>", "<frozen os>:679 in __getitem__"],
        "missing_env": "TWILIO_AUTH_TOKEN", "module_not_found": None})
    facts["boot"]["preload_boot"] = preload(listening=False, status=None, exited=True, exit_code=1)
    report = diagnose(facts)
    assert "missing_env" in ids(report) and "boot_exception" not in ids(report)
    c = cause(report, "missing_env")
    assert c["layer"] == "boot"
    assert "TWILIO_AUTH_TOKEN is not set in the service environment" in c["evidence"]
    assert c["remedy"].startswith("Set TWILIO_AUTH_TOKEN in the service environment (%s)" % ENV_FILE)


def test_missing_env_from_the_log_traceback(facts, tmp_path):
    # The doctor's dry import had the variable; the service's worker did not.
    stop_service(facts)
    write_log(facts, tmp_path, start_lines(0, MASTER, workers=(4250,)) + [
        gline(1, 4250, "Exception in worker process", "ERROR"),
        "Traceback (most recent call last):",
        '  File "/srv/app/AgentLocator/main.py", line 9, in <module>',
        '    TOKEN = os.environ["TWILIO_AUTH_TOKEN"]',
        '  File "<frozen os>", line 679, in __getitem__',
        "KeyError: 'TWILIO_AUTH_TOKEN'",
        gline(1, MASTER, "Shutting down: Master"),
        gline(1, MASTER, "Reason: Worker failed to boot."),
    ])
    report = diagnose(facts)
    assert ids(report) == ["missing_env", "not_listening"]
    c = cause(report, "missing_env")
    assert c["evidence"][-1] == "last traceback: KeyError: 'TWILIO_AUTH_TOKEN'"
    assert "Set TWILIO_AUTH_TOKEN in the service environment" in c["remedy"]


@pytest.mark.parametrize("import_seconds, severity", [(31.0, "fail"), (30.0, "fail"), (16.0, "warn"), (15.0, "warn")])
def test_slow_boot(facts, import_seconds, severity):
    facts["boot"]["dry_import"]["import_seconds"] = import_seconds
    facts["boot"]["dry_import"]["seconds"] = import_seconds + 0.5
    if severity == "fail":
        # A worker stuck importing is never timed out: the master LISTENs, /healthz hangs.
        set_healthz(facts, ["no answer within 3s"])
        facts["boot"]["preload_boot"] = preload(listening=False, status=None, timed_out=True, seconds=30.0)
    report = diagnose(facts)
    assert ids(report) == ["slow_boot"]
    c = cause(report, "slow_boot")
    assert c["severity"] == severity
    assert layer(report, "boot")["status"] == severity
    assert "takes %.1f s" % import_seconds in c["evidence"][0]
    assert re.search(r"worker timeout (is )?30 s", c["evidence"][0])
    assert "raise --timeout above %d s" % (int(import_seconds) + 10) in c["remedy"]
    assert report["verdict"] == ("down" if severity == "fail" else "degraded")
    assert report["failed_layer"] == ("healthz" if severity == "fail" else None)


def test_fast_import_is_not_slow(facts):
    facts["boot"]["dry_import"]["import_seconds"] = 14.9
    assert diagnose(facts)["verdict"] == "healthy"


def test_slow_boot_uses_the_masters_timeout(facts):
    facts["process"]["masters"] = [master_fact(timeout=120)]
    facts["boot"]["dry_import"]["import_seconds"] = 45.0
    assert diagnose(facts)["verdict"] == "healthy"     # 45 s < 120/2


def test_dry_import_that_never_finishes_is_slow_boot(facts):
    facts["boot"]["dry_import"] = {"ok": False, "timed_out": True, "seconds": 30.0, "exit_code": -15,
                                   "output_tail": [], "run_calls": []}
    report = diagnose(facts)
    c = cause(report, "slow_boot")
    assert c["severity"] == "fail"
    assert c["evidence"] == ["importing AgentLocator.main:app did not finish within 30.0 s (doctor_boot_timeout)"]


def test_dev_server_at_import(facts, tmp_path):
    facts["boot"]["dev_server_calls"] = [{"file": "AgentLocator/main.py", "line": 42, "code": "app.run(...)"}]
    facts["boot"]["dry_import"]["run_calls"] = [{"kind": "app.run()", "file": "/srv/app/AgentLocator/main.py",
                                                 "line": 42}]
    write_log(facts, tmp_path, HEALTHY_LOG + [
        " * Serving Flask app 'AgentLocator.main'", " * Debug mode: off",
        "WARNING: This is a development server. Do not use it in a production deployment.",
        " * Running on all addresses (0.0.0.0)", " * Running on http://127.0.0.1:5000", "Press CTRL+C to quit"])
    # The master keeps $PORT in LISTEN (the kernel accepts, nobody answers); the worker LISTENs on 5000.
    set_sockets(facts, [sock("0.0.0.0", PORT, MASTER, "master"), sock("0.0.0.0", 5000, 4250, "worker of 4242")])
    set_healthz(facts, ["no answer within 3s"])
    facts["boot"]["preload_boot"] = preload(listening=False, status=None, dev_server=True)
    report = diagnose(facts)
    assert ids(report) == ["dev_server_at_import"]
    assert report["verdict"] == "down"
    assert report["failed_layer"] == "healthz"
    c = cause(report, "dev_server_at_import")
    assert c["evidence"][0] == 'AgentLocator/main.py:42: app.run(...) at import time (not under if __name__ == "__main__":)'
    assert "the dry import called app.run() from /srv/app/AgentLocator/main.py:42" in c["evidence"]
    assert " * Running on http://127.0.0.1:5000" in c["evidence"]
    assert "worker 4250 listens on 0.0.0.0:5000 (a dev server inside the worker)" in c["evidence"]
    assert '`if __name__ == "__main__":` (AgentLocator/main.py:42)' in c["remedy"]


def test_worker_timeout(facts, tmp_path):
    write_log(facts, tmp_path, HEALTHY_LOG + [
        gline(1800, MASTER, "WORKER TIMEOUT (pid:4250)", "CRITICAL"),
        gline(1800, 4250, "Error handling request /incoming_call", "ERROR"),
        gline(1801, 4250, "Worker exiting (pid: 4250)"),
        gline(1801, MASTER, "Worker (pid:4250) was sent SIGKILL! Perhaps out of memory?", "ERROR"),
        gline(1801, 4262, "Booting worker with pid: 4262"),
        gline(2400, MASTER, "WORKER TIMEOUT (pid:4262)", "CRITICAL"),
        gline(2401, 4270, "Booting worker with pid: 4270"),
    ])
    report = diagnose(facts)
    assert ids(report) == ["worker_timeout"]     # the SIGKILL after a timeout is not an OOM kill
    assert report["failed_layer"] == "boot"
    assert report["verdict"] == "degraded"
    c = cause(report, "worker_timeout")
    assert c["evidence"][0] == "2 x WORKER TIMEOUT since the master started (timeout 30 s, master 4242, from command line)"
    assert c["evidence"][1].endswith("[CRITICAL] WORKER TIMEOUT (pid:4250)")


# --- system layer -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("used_pct, free, severity", [
    (99.8, 4 * MiB, "fail"),
    (96.0, 80 * MiB, "warn"),
    (90.0, 8 * MiB, "fail"),      # under 16 MiB free fails whatever the percentage
])
def test_disk_full(facts, used_pct, free, severity):
    facts["system"]["disks"][1].update(used_pct=used_pct, free_bytes=free)
    report = diagnose(facts)
    assert ids(report) == ["disk_full"]
    c = cause(report, "disk_full")
    assert c["severity"] == severity
    assert report["failed_layer"] == ("system" if severity == "fail" else None)
    assert report["verdict"] == "degraded"        # gunicorn serves; only statvfs shows it
    assert c["evidence"][0].startswith("/var/log/agentlocator (mount /var/log): %.1f%% used, %d MiB free"
                                       % (used_pct, free >> 20))
    assert c["remedy"].startswith("Free space on /var/log ")


def test_fd_limit_low_on_the_master(facts):
    facts["system"]["nofile_masters"] = [{"pid": MASTER, "soft": 256, "hard": 256}]
    report = diagnose(facts)
    assert ids(report) == ["fd_limit_low"]
    c = cause(report, "fd_limit_low")
    assert c["severity"] == "fail"
    assert report["failed_layer"] == "system"
    assert c["evidence"] == ["master 4242: Max open files 256 (soft) / 256 (hard) in /proc/4242/limits"]
    assert "now: 256" in c["remedy"] and "LimitNOFILE=" in c["remedy"]


def test_fd_limit_low_in_a_fresh_shell_only_warns(facts):
    facts["system"]["nofile_shell"] = {"soft": 512, "hard": 4096}
    report = diagnose(facts)
    c = cause(report, "fd_limit_low")
    assert c["severity"] == "warn"
    assert report["failed_layer"] is None and report["verdict"] == "degraded"


@pytest.mark.parametrize("available_pct, severity", [(2.1, "fail"), (7.5, "warn")])
def test_memory_pressure(facts, available_pct, severity):
    facts["system"]["memory"].update(available_pct=available_pct,
                                     available_bytes=int(4 * GiB * available_pct / 100))
    report = diagnose(facts)
    assert ids(report) == ["memory_pressure"]
    c = cause(report, "memory_pressure")
    assert c["severity"] == severity
    assert c["evidence"][0].startswith("%.1f%% of 4096 MiB available; largest: python 4250 (142 MiB)" % available_pct)
    assert "python 4250 (142 MiB), python 4251 (139 MiB), postgres 812 (96 MiB)" in c["remedy"]


def test_memory_unknown_does_not_break_the_report(facts):
    facts["system"]["memory"].update(total_bytes=0, available_bytes=0, available_pct=None)
    report = diagnose(facts)
    assert "memory_pressure" not in ids(report)


def test_oom_killed_by_the_kernel(facts, tmp_path):
    line = ("[431807.114052] Out of memory: Killed process 4251 (gunicorn) total-vm:2345676kB, "
            "anon-rss:1987652kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:4200kB oom_score_adj:0")
    facts["system"]["oom_kernel"] = [{"pid": 4251, "name": "gunicorn", "line": line}]
    facts["system"]["oom_kill_count"] = 1
    write_log(facts, tmp_path, HEALTHY_LOG + [
        gline(3000, MASTER, "Worker (pid:4251) was sent SIGKILL! Perhaps out of memory?", "ERROR"),
        gline(3000, 4263, "Booting worker with pid: 4263")])
    report = diagnose(facts)
    assert ids(report) == ["oom_killed"]
    c = cause(report, "oom_killed")
    assert c["severity"] == "fail"
    assert c["evidence"][0] == line
    assert c["evidence"][1].endswith("Worker (pid:4251) was sent SIGKILL! Perhaps out of memory?")


def test_oom_killed_seen_only_in_the_gunicorn_log_warns(facts, tmp_path):
    write_log(facts, tmp_path, HEALTHY_LOG + [
        gline(3000, MASTER, "Worker (pid:4251) was sent SIGKILL! Perhaps out of memory?", "ERROR")])
    report = diagnose(facts)
    assert ids(report) == ["oom_killed"]
    assert cause(report, "oom_killed")["severity"] == "warn"


def test_oom_kill_of_another_program_is_not_the_apps(facts):
    facts["system"]["oom_kernel"] = [{"pid": 812, "name": "postgres",
                                      "line": "Out of memory: Killed process 812 (postgres) total-vm:1kB"}]
    assert diagnose(facts)["verdict"] == "healthy"


# --- several faults at once ---------------------------------------------------------------------------------------
def test_failed_layer_is_the_first_failing_layer_and_causes_follow_the_ladder(facts):
    # wrong port (listen) + a second runner (process) + nearly full disk (warn) + 256 open files (fail) (system)
    facts["process"]["masters"] = [
        master_fact(bind="0.0.0.0:5000"),
        master_fact(pid=4300, age=60.0, bind="0.0.0.0:5001",
                    runner={"kind": "nohup", "pid": None,
                            "detail": "SIGHUP ignored or output to nohup.out, reparented to pid 1"})]
    set_sockets(facts, [sock("0.0.0.0", 5000, MASTER, "master"), sock("0.0.0.0", 5001, 4300, "master")])
    set_healthz(facts, ["Connection refused"] * 4)
    facts["boot"]["preload_boot"] = preload()
    facts["system"]["disks"][1].update(used_pct=96.0, free_bytes=80 * MiB)
    facts["system"]["nofile_masters"] = [{"pid": MASTER, "soft": 256, "hard": 256}]
    report = diagnose(facts)
    assert report["failed_layer"] == "process"
    assert report["verdict"] == "down"
    assert [(c["layer"], c["id"], c["severity"]) for c in report["causes"]] == [
        ("process", "multiple_runners", "fail"),
        ("listen", "wrong_port", "fail"),
        ("system", "fd_limit_low", "fail"),      # fail before warn within a layer, though found after
        ("system", "disk_full", "warn"),
    ]


def test_causes_carry_the_cause_table_metadata(facts):
    set_sockets(facts, [sock("127.0.0.1", PORT, MASTER, "master")])
    c = cause(diagnose(facts), "bind_loopback_only")
    assert (c["twilio_error"], c["runbook_step"], c["runbook_cause"]) == (None, "1.3", 1)


# --- the cause table ------------------------------------------------------------------------------------------------
def test_cause_table_is_the_contracts_id_list():
    assert sorted(CAUSES) == sorted(STABLE_IDS)
    assert set(c["layer"] for c in CAUSES.values()) <= set(LADDER)
    assert list(LAYERS) == LADDER


def test_render_remedy_fills_host_values_and_tolerates_missing_ones():
    assert render_remedy("fd_limit_low", {"extra": "256"}).endswith("now: 256.")
    assert render_remedy("wrong_port", {"port": 8123}) == (
        "Bind to $PORT instead of a hard-coded port (?): ? (PORT=8123); the canonical command line is: ?")


def test_stable_ids_match_the_contract():
    text = (DOCS / "contract.md").read_text()
    section = text.split("## Stable cause ids", 1)[1].strip().split("\n\n", 1)[0]
    assert sorted(re.findall(r"[a-z][a-z0-9_]+", section)) == sorted(STABLE_IDS)


def test_boot_checks_the_user_turned_off_are_skipped_not_judged(facts):
    # A down service, so the preload boot would have run: the user turned both checks off.
    stop_service(facts)
    facts["boot"].update(dry_import=None, dry_import_off=True, preload_boot=None, preload_off=True,
                         preload_skipped="doctor_preload_boot=never")
    report = diagnose(facts)
    checks = dict((c["name"], c) for c in layer(report, "boot")["checks"])
    assert checks["dry import"] == {"name": "dry import", "status": "skip",
                                    "detail": "turned off (doctor_dry_import=false): the app was not imported"}
    assert checks["preload boot"] == {"name": "preload boot", "status": "skip",
                                      "detail": "turned off (doctor_preload_boot=never): the app was not booted"}
    assert [c for c in ids(report) if cause_layer(c) == "boot"] == []


def cause_layer(cause_id):
    return CAUSES[cause_id]["layer"]


def test_boot_checks_say_whom_the_app_ran_as(facts):
    stop_service(facts)
    who = "www-data (uid 33) from the master 4242"
    facts["boot"]["dry_import"]["run_as"] = who
    facts["boot"]["preload_boot"]["run_as"] = who
    checks = dict((c["name"], c) for c in layer(diagnose(facts), "boot")["checks"])
    assert checks["dry import"]["detail"].endswith("; ran as " + who)
    assert checks["preload boot"]["detail"].endswith("; ran as " + who)


def test_a_source_file_that_does_not_parse_is_named_not_taken_for_a_dev_server(facts):
    # A stray broken .py in the app package (never imported) crashed the report with an IndexError.
    facts["boot"]["dev_server_calls"] = [{"file": "AgentLocator/old_draft.py", "line": 3,
                                          "code": "SyntaxError: invalid syntax", "syntax_error": True}]
    report = diagnose(facts)
    assert report["verdict"] == "healthy"
    assert check(report, "boot", "no dev server at import")["detail"] == (
        "no app.run()/socketio.run() reachable at import; not parsed: AgentLocator/old_draft.py:3 "
        "(SyntaxError: invalid syntax)")


# --- effective settings: sources in the report, remedies at the place to change (issue 13 points 1, 4, 6) --------------
def master_from_config(tmp_path, config, argv_tail=(), environ=None, runner=None):
    """A master whose settings come from a real config file in its cwd, read by gunicorn_settings."""
    (tmp_path / "gunicorn.conf.py").write_text(config)
    argv = [PYTHON, "-m", "gunicorn", APP] + list(argv_tail)
    found = gunicorn_settings.effective(argv, environ or {}, str(tmp_path), lambda p: Path(p).read_text())
    m = master_fact(runner=runner)
    m.update(cwd=str(tmp_path), cmdline=" ".join(argv), settings=found["settings"], settings_sources=found["sources"],
             settings_computed=found["computed"], config_file=found["config_file"], settings_problems=found["problems"])
    return m


def test_wrong_port_from_a_config_file_names_the_file_and_line(facts, tmp_path):
    facts["process"]["masters"] = [master_from_config(tmp_path, 'workers = 2\nbind = "0.0.0.0:5000"\n')]
    set_sockets(facts, [sock("0.0.0.0", 5000, MASTER, "master")])
    set_healthz(facts, ["Connection refused"] * 4)
    facts["boot"]["preload_boot"] = preload()
    report = diagnose(facts)
    c = cause(report, "wrong_port")
    where = "config file %s:2" % (tmp_path / "gunicorn.conf.py")
    assert "master 4242 binds 0.0.0.0:5000, from %s" % where in c["evidence"]
    assert 'in the %s set `bind = "0.0.0.0:" + os.environ["PORT"]`' % where in c["remedy"]
    assert "replace -b" not in c["remedy"]
    assert report["settings"]["values"]["bind"] == {"value": ["0.0.0.0:5000"], "source": where}
    assert report["settings"]["values"]["timeout"] == {"value": 30, "source": "default"}


def test_wrong_port_from_gunicorn_cmd_args_names_the_variable_and_the_env_file(facts, tmp_path):
    m = master_from_config(tmp_path, "", environ={"GUNICORN_CMD_ARGS": "-b 0.0.0.0:5000 --timeout 90"})
    facts["process"]["masters"] = [m]
    set_sockets(facts, [sock("0.0.0.0", 5000, MASTER, "master")])
    set_healthz(facts, ["Connection refused"] * 4)
    facts["boot"]["preload_boot"] = preload()
    c = cause(diagnose(facts), "wrong_port")
    assert ("in GUNICORN_CMD_ARGS (set in %s) replace -b 0.0.0.0:5000 with -b 0.0.0.0:8123" % facts["inputs"]["env_file"]
            ) in c["remedy"]


def test_slow_boot_uses_the_effective_timeout_and_points_at_its_line(facts, tmp_path):
    facts["process"]["masters"] = [master_from_config(tmp_path, "import os\ntimeout = int(os.environ.get('T', '90'))\n")]
    facts["boot"]["dry_import"]["import_seconds"] = 40.0   # over the default 30, under half of 90: no cause
    assert "slow_boot" not in ids(diagnose(facts))
    facts["boot"]["dry_import"]["import_seconds"] = 95.0
    c = cause(diagnose(facts), "slow_boot")
    where = "config file %s:2" % (tmp_path / "gunicorn.conf.py")
    assert "the worker timeout is 90 s (master 4242, from %s)" % where in c["evidence"][0]
    assert "in the %s set `timeout = 105`" % where in c["remedy"]


def test_a_computed_setting_is_shown_with_its_expression(facts, tmp_path):
    m = master_from_config(tmp_path, "import multiprocessing\nworkers = multiprocessing.cpu_count() * 2\n")
    facts["process"]["masters"] = [m]
    report = diagnose(facts)
    assert report["verdict"] == "healthy"
    workers = report["settings"]["values"]["workers"]
    assert workers["value"] is None and "multiprocessing.cpu_count() * 2" in workers["computed"]
    assert report["settings"]["concurrency"]["calls"] is None
    assert "workers computed: multiprocessing.cpu_count() * 2" in check(report, "process", "gunicorn settings of master 4242")["detail"]


@pytest.mark.parametrize("tail, calls, shown", [
    (["-k", "gthread", "--threads", "8"], 8, "-k gthread -w 1 --threads 8 (1 x 8)"),
    (["-k", "sync", "-w", "3", "--threads", "4"], 12, "-k sync -w 3 --threads 4 (3 x 4)"),
    (["-k", "eventlet", "-w", "2", "--worker-connections", "50"], 100, "-k eventlet -w 2 --worker-connections 50 (2 x 50)"),
    (["-w", "3"], 3, "-k sync -w 3"),
])
def test_concurrency_follows_the_worker_class(facts, tmp_path, tail, calls, shown):
    facts["process"]["masters"] = [master_from_config(tmp_path, "", argv_tail=tail)]
    report = diagnose(facts)
    assert report["settings"]["concurrency"] == {"calls": calls, "detail": shown}


# --- a unix socket behind a front door (issue 13 point 3) ---------------------------------------------------
SOCKET = "/run/app/app.sock"


def behind_door(facts, door=True, accepting=True, config_names=(SOCKET,), door_results=(200,), socket_results=(200,)):
    """Facts of gunicorn -b unix:SOCKET behind nginx on $PORT, as listen.collect and healthz.collect give them."""
    facts["process"]["masters"][0]["settings"]["bind"] = ["unix:" + SOCKET]
    set_sockets(facts, [sock("127.0.0.1", PORT, 900, None, name="nginx")] if door else [])
    facts["listen"]["unix"] = [{"path": SOCKET, "sources": ["the bind of master %d" % MASTER], "file": "socket",
                                "accepting": accepting, "table_error": None,
                                "app": [{"pid": MASTER, "app_role": "master"}] if accepting else []}]
    facts["listen"]["front_door"] = {"pid": 900, "name": "nginx", "address": "127.0.0.1", "port": PORT,
                                     "config": "/etc/nginx/nginx.conf", "config_files": 3,
                                     "unix_upstreams": list(config_names), "config_error": None} if door else None
    set_healthz(facts, list(door_results))
    back = copy.deepcopy(facts)
    set_healthz(back, list(socket_results))
    facts["healthz"]["backend"] = {"socket": SOCKET, "url": "http://localhost/healthz over unix:" + SOCKET,
                                   "samples": back["healthz"]["samples"]}
    return facts


def test_a_socket_app_behind_its_front_door_is_healthy(facts):
    report = diagnose(behind_door(facts))
    assert report["verdict"] == "healthy" and report["causes"] == []
    assert "nginx (pid 900) on 127.0.0.1:%d" % PORT in check(report, "listen", "listening on $PORT")["detail"]
    assert check(report, "healthz", "stable 200 over the socket")["status"] == "pass"


def test_a_stale_socket_behind_the_front_door_names_the_dead_backend(facts):
    behind_door(facts, accepting=False, door_results=(502,), socket_results=("[Errno 111] Connection refused",))
    report = diagnose(facts)
    assert report["verdict"] == "down" and ids(report) == ["proxy_backend_down"]
    found = cause(report, "proxy_backend_down")
    assert any("stale socket file" in e for e in found["evidence"])
    assert "-b unix:%s" % SOCKET in found["remedy"] and "0.0.0.0" not in found["remedy"]


def test_a_front_door_that_forwards_elsewhere_is_named_while_the_socket_answers(facts):
    report = diagnose(behind_door(facts, config_names=("/run/other.sock",), door_results=(502,)))
    assert report["verdict"] == "down" and ids(report) == ["proxy_backend_down"]
    assert "point its upstream" in cause(report, "proxy_backend_down")["remedy"]


def test_the_front_door_502_while_the_socket_answers_names_the_proxy(facts):
    behind_door(facts, door_results=(502,))
    facts["listen"]["front_door"]["config_error"] = "/etc/nginx/nginx.conf: permission denied"
    report = diagnose(facts)
    assert ids(report) == ["proxy_backend_down"] and report["failed_layer"] == "listen"
    assert "the front door does not reach it" in cause(report, "proxy_backend_down")["remedy"]
    assert check(report, "healthz", "stable 200 over the socket")["status"] == "pass"


def test_a_socket_app_with_nothing_on_its_port_has_its_front_door_down(facts):
    report = diagnose(behind_door(facts, door=False, door_results=("[Errno 111] Connection refused",)))
    assert ids(report) == ["front_door_down"] and report["verdict"] == "down"
    assert "unix:%s" % SOCKET in cause(report, "front_door_down")["remedy"]
