"""plugins/module_utils/judges/eventlet.py on recorded facts.

The facts below were recorded from probes/eventlet.collect on real services (gunicorn 25.3.0 of the
demo app: healthy with EVENTLET_NO_GREENDNS=1 EVENTLET_HUB=selects; EVENTLET_HUB=select; eventlet
0.33.3), with paths moved to /srv/app. Every report goes through test_verdict.diagnose(), which
validates it against the contract's schema and invariants.
"""

import copy

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import eventlet_compat
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import verdict
from test_verdict import (HEALTHY_LOG, MASTER, PYTHON, cause, check, diagnose, gline, healthy_facts, ids, layer,
                          master_fact, preload, stop_service, write_log)

ENV_FILE = "/etc/agentlocator/agentlocator.env"
LOG = "/var/log/agentlocator/gunicorn.log"
DEPRECATION = ("The eventlet worker is DEPRECATED and will be removed in Gunicorn 26.0. Please migrate to gevent, "
               "gthread, or another supported worker type.")

# Recorded: a healthy `-k eventlet` master with the runbook's EVENTLET_NO_GREENDNS=1 and EVENTLET_HUB=selects.
HEALTHY = {
    "applies": True,
    "worker_class_sources": [{"source": "master %d (command line)" % MASTER, "worker_class": "eventlet"},
                             {"source": 'the gunicorn log ("Using worker: eventlet")', "worker_class": "eventlet"}],
    "settings": {"pid": MASTER, "worker_class": "eventlet", "workers": 1, "timeout": 60, "preload": False},
    "worker_timeouts": 0,
    "runners": [],
    "python": "3.11.7",
    "python_executable": PYTHON,
    "versions": {"gunicorn": "25.3.0", "eventlet": "0.41.3", "greenlet": "3.5.6", "dnspython": "2.9.2",
                 "gevent": None, "uvloop": None},
    "problems": [],
    "recommended_pins": ["gunicorn>=25,<26", "eventlet>=0.40.3", "greenlet>=3.0.3"],
    "pip_command": PYTHON + " -m pip install 'gunicorn>=25,<26' 'eventlet>=0.40.3' 'greenlet>=3.0.3'",
    "gunicorn_notice": "[WARNING] The eventlet worker is DEPRECATED and will be removed in Gunicorn 26.0.",
    "env": {"running": [{"source": "/proc/%d/environ (running master %d, -k eventlet)" % (MASTER, MASTER),
                         "EVENTLET_NO_GREENDNS": "1", "EVENTLET_HUB": "selects"}],
            "next_start": [], "env_file": None},
    "hubs_available": ["asyncio", "epolls", "hub", "kqueue", "poll", "pyevent", "selects", "timer"],
    "platform_select": ["epoll", "poll"],
    "conflicts": [],
    "monkey_patch": {"static": [], "entry_file": "AgentLocator/main.py", "traced": None, "dry_import_ok": True},
    "log": {"errors": [], "worker_timeouts": 0, "class_uri": None,
            "deprecation": ["/srv/app/.venv/lib/python3.11/site-packages/gunicorn/workers/geventlet.py:23: "
                            "EventletDeprecationWarning:", DEPRECATION]},
    "log_file": LOG,
    "stable": True,
    "boot": None,
    "boot_skipped": "/healthz answered a stable 200 and nothing says eventlet cannot run",
}

# Recorded: the spare-port `-k eventlet` boot of eventlet 0.33.3 under gunicorn 25.3.0 (output trimmed).
OLD_EVENTLET_BOOT = {
    "port": 42553,
    "command": "-m gunicorn --preload -k eventlet -w 1 -b 127.0.0.1:42553 --timeout 30 --log-level debug --capture-output "
               "--error-logfile - --access-logfile - --no-control-socket AgentLocator.main:app",
    "listening": False, "healthz_status": None, "listen_seconds": None, "exited": True, "exit_code": 1,
    "timed_out": False, "dev_server": False, "seconds": 0.51,
    "output_tail": ["Error: class uri 'eventlet' invalid or not found: ", "", "[Traceback (most recent call last):",
                    '  File "/srv/app/.venv/lib/python3.11/site-packages/gunicorn/workers/geventlet.py", line 29, in <module>',
                    '    raise RuntimeError("eventlet worker requires eventlet 0.40.3 or higher")',
                    "RuntimeError: eventlet worker requires eventlet 0.40.3 or higher", "]", ""],
    "events": {"events": [], "tracebacks": []},
    "env": {"EVENTLET_NO_GREENDNS": "yes", "EVENTLET_HUB": "selects"},
    "error_line": "RuntimeError: eventlet worker requires eventlet 0.40.3 or higher",
    "class_uri": "Error: class uri 'eventlet' invalid or not found:",
}
GOOD_BOOT = dict(OLD_EVENTLET_BOOT, listening=True, healthz_status=200, listen_seconds=0.22, exited=False,
                 exit_code=None, seconds=1.57, output_tail=[], error_line=None, class_uri=None)


def with_eventlet(facts, **changes):
    ev = copy.deepcopy(HEALTHY)
    ev.update(changes)
    facts["eventlet"] = ev
    facts["process"]["masters"] = [master_fact(worker_class="eventlet", workers=1, timeout=60)]
    return ev


def down_with_env_file(facts, **versions):
    """No master runs (it could not start); the env file and the log say -k eventlet."""
    stop_service(facts)
    facts["inputs"]["env_file"] = ENV_FILE
    ev = with_eventlet(facts, settings=None, stable=False, boot_skipped=None,
                       worker_class_sources=[{"source": "the gunicorn log (\"Error: class uri 'eventlet' invalid or not "
                                                        "found:\")", "worker_class": "eventlet"}])
    ev["versions"].update(versions)
    ev["problems"] = eventlet_compat.check_versions(ev["python"], ev["versions"])
    ev["env"] = {"running": [], "env_file": ENV_FILE, "next_start": [
        {"source": ENV_FILE + " (env file)", "EVENTLET_NO_GREENDNS": "yes", "EVENTLET_HUB": "selects"}]}
    ev["log"]["class_uri"] = "Error: class uri 'eventlet' invalid or not found:"
    facts["process"]["masters"] = []
    return ev


@pytest.fixture
def facts(tmp_path):
    return healthy_facts(tmp_path)


def eventlet_checks(report):
    return dict((c["name"], c) for c in layer(report, "eventlet")["checks"])


def test_healthy_eventlet_service_has_no_eventlet_cause(facts):
    with_eventlet(facts)
    report = diagnose(facts)
    assert report["verdict"] == "healthy" and ids(report) == []
    assert layer(report, "eventlet")["status"] == "pass"
    checks = eventlet_checks(report)
    assert "-k eventlet from master 4242 (command line)" in checks["eventlet in use"]["detail"]
    assert "note (information, not a fault): " + DEPRECATION in checks["eventlet in use"]["detail"]
    assert checks["versions"]["detail"].startswith("Python 3.11.7, gunicorn 25.3.0, eventlet 0.41.3, greenlet 3.5.6")
    assert 'EVENTLET_NO_GREENDNS=1 in /proc/4242/environ (running master 4242, -k eventlet) leaves green DNS on' in \
        checks["EVENTLET_* environment"]["detail"]
    assert checks["eventlet boot"] == {"name": "eventlet boot", "status": "skip",
                                       "detail": "not needed: /healthz answered a stable 200 and nothing says eventlet cannot run"}


def test_sync_service_skips_with_the_worker_settings(facts, tmp_path):
    facts["eventlet"] = {"applies": False, "worker_class_sources": [{"source": "master 4242 (command line)", "worker_class": "sync"}],
                         "settings": {"pid": MASTER, "worker_class": "sync", "workers": 2, "timeout": 30, "preload": False},
                         "worker_timeouts": 2, "runners": []}
    write_log(facts, tmp_path, HEALTHY_LOG + [gline(1800, MASTER, "WORKER TIMEOUT (pid:4250)", "CRITICAL"),
                                              gline(2400, MASTER, "WORKER TIMEOUT (pid:4251)", "CRITICAL")])
    report = diagnose(facts)
    eventlet = layer(report, "eventlet")
    assert eventlet["status"] == "skip" and len(eventlet["checks"]) == 1
    detail = eventlet["checks"][0]["detail"]
    assert detail.startswith("service runs sync; eventlet not in use (-k sync from master 4242 (command line)); ")
    assert "-w 2: at most 2 concurrent calls (each open media stream holds a whole sync worker)" in detail
    assert "--timeout 30 s" in detail and "2 x WORKER TIMEOUT" in detail
    assert ids(report) == ["worker_timeout"]     # reported once, by the boot layer


def test_env_missing_warns_with_where_to_add_it(facts):
    ev = with_eventlet(facts)
    ev["env"]["running"][0].update(EVENTLET_NO_GREENDNS=None, EVENTLET_HUB=None)
    ev["env"]["env_file"] = ENV_FILE
    ev["env"]["next_start"] = [{"source": ENV_FILE + " (env file)", "EVENTLET_NO_GREENDNS": None, "EVENTLET_HUB": "poll"}]
    report = diagnose(facts)
    assert ids(report) == ["eventlet_env_missing"]
    c = cause(report, "eventlet_env_missing")
    assert c["severity"] == "warn" and report["verdict"] == "degraded" and report["failed_layer"] is None
    assert c["evidence"] == ["EVENTLET_NO_GREENDNS is not set in /proc/4242/environ (running master 4242, -k eventlet)",
                             "EVENTLET_HUB is not set in /proc/4242/environ (running master 4242, -k eventlet)",
                             "EVENTLET_NO_GREENDNS is not set in %s (env file)" % ENV_FILE]
    assert c["remedy"].startswith("Add EVENTLET_NO_GREENDNS=yes and EVENTLET_HUB=selects to %s (the env file" % ENV_FILE)


def test_runbook_hub_select_fails_with_the_log_line(facts):
    ev = down_with_env_file(facts)
    ev["env"]["next_start"][0]["EVENTLET_HUB"] = "select"
    ev["log"]["errors"] = [{"kind": "hub_invalid", "line": "ModuleNotFoundError: No module named 'eventlet.hubs.select'"}]
    ev["boot"] = copy.deepcopy(GOOD_BOOT)
    report = diagnose(facts)
    assert "eventlet_env_invalid" in ids(report) and report["verdict"] == "down"
    c = cause(report, "eventlet_env_invalid")
    assert c["severity"] == "fail"
    assert c["evidence"] == [
        "EVENTLET_HUB=select in %s (env file): No module named 'eventlet.hubs.select' (the hubs are selects, poll, "
        "epolls, kqueue, asyncio)" % ENV_FILE,
        "%s: ModuleNotFoundError: No module named 'eventlet.hubs.select'" % LOG,
        "with EVENTLET_NO_GREENDNS=yes and EVENTLET_HUB=selects the spare-port eventlet boot listened and answered 200"]
    assert c["remedy"].startswith("Set EVENTLET_NO_GREENDNS=yes and EVENTLET_HUB=selects in %s" % ENV_FILE)
    assert 'the runbook\'s "select" does not exist' in c["remedy"]
    assert eventlet_checks(report)["eventlet boot"]["status"] == "pass"


def test_incompatible_versions_and_the_sync_fork(facts):
    ev = down_with_env_file(facts, eventlet="0.33.3")
    ev["log"]["errors"] = [{"kind": "incompatible", "line": "RuntimeError: eventlet worker requires eventlet 0.40.3 or higher"}]
    ev["boot"] = copy.deepcopy(OLD_EVENTLET_BOOT)
    facts["boot"]["preload_boot"] = preload()            # the boot layer's sync boot answered 200
    report = diagnose(facts)
    c = cause(report, "eventlet_incompatible")
    assert c["severity"] == "fail" and (c["runbook_step"], c["runbook_cause"]) == ("4.1", 3)
    assert c["evidence"][0] == "Python 3.11.7, gunicorn 25.3.0, eventlet 0.33.3, greenlet 3.5.6, dnspython 2.9.2 in %s: " \
                               "gunicorn 25.3.0 needs eventlet >= 0.40.3" % PYTHON
    assert "eventlet 0.33.3 -> RuntimeError: eventlet worker requires eventlet 0.40.3 or higher (fixed by eventlet>=0.40.3)" \
        in c["evidence"]
    assert "%s: RuntimeError: eventlet worker requires eventlet 0.40.3 or higher" % LOG in c["evidence"]
    assert c["evidence"][-1].startswith("sync boots, eventlet does not: gunicorn --preload -k eventlet on spare port 42553")
    assert c["remedy"].startswith("Install a combination that runs the eventlet worker on Python 3.11.7: %s -m pip install "
                                  "'gunicorn>=25,<26' 'eventlet>=0.40.3' 'greenlet>=3.0.3'." % PYTHON)
    assert 'The runbook\'s "eventlet >= 0.33.3" is out of date' in c["remedy"]
    assert "Until then keep the service on -k sync, which boots here (gunicorn --preload -k sync on spare port 41234" in c["remedy"]
    assert "cd /srv/app && PORT=8123 %s -m gunicorn AgentLocator.main:app -k sync" % PYTHON in c["remedy"]
    boot = eventlet_checks(report)["eventlet boot"]
    assert boot["status"] == "fail" and boot["detail"].endswith("keep -k sync and fix eventlet")


def test_gunicorn_27_has_no_eventlet_worker(facts):
    ev = down_with_env_file(facts, gunicorn="27.0.1")
    ev["boot"] = dict(OLD_EVENTLET_BOOT, error_line="ImportError: Entry point ('gunicorn.workers', 'eventlet') not found")
    facts["boot"]["preload_boot"] = preload()
    report = diagnose(facts)
    c = cause(report, "eventlet_incompatible")
    assert c["evidence"][0].endswith("gunicorn 27.0.1 has no eventlet worker (removed in 26.0)")
    assert any("Entry point ('gunicorn.workers', 'eventlet') not found" in e for e in c["evidence"])
    assert "'gunicorn>=25,<26'" in c["remedy"]


def test_eventlet_fails_and_sync_fails_too_is_the_apps_fault(facts):
    ev = down_with_env_file(facts)
    ev["boot"] = dict(OLD_EVENTLET_BOOT, error_line="KeyError: 'DATABASE_URL'")
    facts["boot"]["preload_boot"] = preload(listening=False, status=None, exited=True, exit_code=1)
    report = diagnose(facts)
    assert [i for i in ids(report) if i.startswith("eventlet")] == []
    boot = eventlet_checks(report)["eventlet boot"]
    assert boot["status"] == "warn" and "did not boot either" in boot["detail"]


@pytest.mark.parametrize("breaks, severity", [(False, "warn"), (True, "fail")])
def test_gevent_beside_eventlet(facts, breaks, severity):
    ev = with_eventlet(facts, conflicts=[{"package": "gevent", "version": "26.9.0"}])
    ev["versions"]["gevent"] = "26.9.0"
    if breaks:
        ev["stable"] = False
        ev["boot"] = dict(OLD_EVENTLET_BOOT, error_line="AttributeError: module 'gevent' has no attribute 'getcurrent'")
    report = diagnose(facts)
    c = cause(report, "async_lib_conflict")
    assert c["severity"] == severity
    assert c["evidence"][0] == "gevent 26.9.0 installed beside eventlet 0.41.3 in %s (importlib.metadata)" % PYTHON
    assert c["remedy"] == ("Remove gevent (unless the app itself imports it) from the app environment: %s -m pip uninstall "
                           "-y gevent; and from its requirements." % PYTHON)


def test_late_monkey_patch(facts):
    ev = with_eventlet(facts)
    ev["monkey_patch"]["static"] = [{"file": "AgentLocator/main.py", "line": 27, "scope": "module",
                                     "before": ["base64", "json", "flask", "flask_sock", ".media"]}]
    ev["monkey_patch"]["traced"] = {"calls": [{"file": "/srv/app/AgentLocator/main.py", "line": 27}],
                                    "imported_before": ["http", "socket", "ssl", "threading"]}
    report = diagnose(facts)
    assert ids(report) == ["monkey_patch_misplaced"]
    c = cause(report, "monkey_patch_misplaced")
    assert c["severity"] == "warn"
    assert c["evidence"][0] == ("AgentLocator/main.py:27: eventlet.monkey_patch() after importing base64, json, flask, "
                                "flask_sock, .media (not the first statement)")
    assert c["evidence"][1] == ("the dry import: before the first eventlet.monkey_patch() (/srv/app/AgentLocator/main.py:27) "
                                "the app had imported http, socket, ssl, threading")
    assert c["remedy"].endswith("first statements of AgentLocator/main.py, before any other import: move the call at "
                                "AgentLocator/main.py:27 up there.")


def test_double_monkey_patch(facts):
    ev = with_eventlet(facts)
    ev["monkey_patch"]["static"] = [
        {"file": "AgentLocator/__init__.py", "line": 2, "scope": "module", "before": []},
        {"file": "AgentLocator/main.py", "line": 15, "scope": "module", "before": []},
        {"file": "AgentLocator/main.py", "line": 200, "scope": "main guard", "before": None}]
    ev["monkey_patch"]["traced"] = {"calls": [{"file": "/srv/app/AgentLocator/__init__.py", "line": 2},
                                              {"file": "/srv/app/AgentLocator/main.py", "line": 15}], "imported_before": []}
    c = cause(diagnose(facts), "monkey_patch_misplaced")
    assert c["evidence"][:2] == [
        "2 eventlet.monkey_patch() calls in the package: AgentLocator/__init__.py:2, AgentLocator/main.py:15",
        "the dry import called eventlet.monkey_patch() 2 times: /srv/app/AgentLocator/__init__.py:2, /srv/app/AgentLocator/main.py:15"]
    assert c["remedy"].endswith(": remove the call at AgentLocator/__init__.py:2.")


def test_late_monkey_patch_under_gunicorn_23_with_preload_fails(facts):
    ev = with_eventlet(facts)
    ev["versions"]["gunicorn"] = "23.0.0"
    ev["settings"]["preload"] = True
    ev["monkey_patch"]["static"] = [{"file": "AgentLocator/main.py", "line": 9, "scope": "module", "before": ["requests"]}]
    c = cause(diagnose(facts), "monkey_patch_misplaced")
    assert c["severity"] == "fail"   # gunicorn 23 patches in the worker, after the --preload import in the master


def test_greendns_value_eventlet_ignores_matters_only_when_dns_fails(facts):
    ev = with_eventlet(facts)
    assert ids(diagnose(facts)) == []
    ev["log"]["errors"] = [{"kind": "greendns", "line": "dns.resolver.NoNameservers: All nameservers failed to answer the query"}]
    c = cause(diagnose(facts), "eventlet_env_invalid")
    assert c["evidence"][0].startswith("EVENTLET_NO_GREENDNS=1 in /proc/4242/environ (running master 4242, -k eventlet) "
                                       "leaves green DNS on")


def test_judge_layer_matches_judge(facts):
    ev = with_eventlet(facts)
    ev["env"]["running"][0]["EVENTLET_HUB"] = None
    result, causes = verdict.judge_layer(facts, "eventlet")
    report = diagnose(facts)
    assert result == layer(report, "eventlet")
    assert [c["id"] for c in causes] == ["eventlet_env_missing"]
    assert check(report, "eventlet", "EVENTLET_* set")["status"] == "warn"


def test_not_probed_is_a_skip(facts):
    facts.pop("eventlet", None)
    assert layer(diagnose(facts), "eventlet")["status"] == "skip"


def test_eventlet_only_planned_with_an_invalid_hub_warns(facts):
    # doctor_worker_class=eventlet on a sync service whose env file has the runbook's hub.
    facts["inputs"]["env_file"] = ENV_FILE
    ev = with_eventlet(facts, worker_class_sources=[{"source": "master 4242 (command line)", "worker_class": "sync"},
                                                    {"source": "doctor_worker_class", "worker_class": "eventlet"}])
    facts["process"]["masters"] = [master_fact()]
    ev["settings"]["worker_class"] = "sync"
    ev["env"] = {"running": [{"source": "/proc/4242/environ (running master 4242, -k sync)", "EVENTLET_NO_GREENDNS": None,
                              "EVENTLET_HUB": None}], "env_file": ENV_FILE,
                 "next_start": [{"source": ENV_FILE + " (env file)", "EVENTLET_NO_GREENDNS": "yes", "EVENTLET_HUB": "select"}]}
    report = diagnose(facts)
    assert cause(report, "eventlet_env_invalid")["severity"] == "warn"
    assert ids(report) == ["eventlet_env_invalid"]


def test_an_eventlet_boot_the_user_turned_off_is_skipped_not_judged(facts):
    ev = down_with_env_file(facts)
    ev.update(boot=None, boot_skipped="doctor_preload_boot=never", boot_off=True)
    facts["boot"].update(dry_import=None, dry_import_off=True, preload_boot=None, preload_off=True)
    report = diagnose(facts)
    assert eventlet_checks(report)["eventlet boot"] == {
        "name": "eventlet boot", "status": "skip",
        "detail": "turned off (doctor_preload_boot=never): the app was not booted with -k eventlet"}


def test_the_sync_fork_keeps_a_unix_socket_behind_a_front_door(facts):
    """An app on unix:PATH behind a proxy that holds $PORT: the sync command keeps the socket (issue 13 point 3)."""
    ev = down_with_env_file(facts, eventlet="0.33.3")
    ev["boot"] = copy.deepcopy(OLD_EVENTLET_BOOT)
    facts["boot"]["preload_boot"] = preload()
    facts["listen"]["unix"] = [{"path": "/run/app/app.sock", "sources": ["the bind of master 4242"], "file": "socket",
                                "accepting": True, "app": [{"pid": 4242, "app_role": "master"}], "table_error": None}]
    remedy = cause(diagnose(facts), "eventlet_incompatible")["remedy"]
    assert "-k sync -w 1 -b unix:/run/app/app.sock " in remedy and "0.0.0.0" not in remedy
