"""Pure parts of verify (why a service is down, from its logs) and of the eventlet pins."""

import os

import psutil

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import (
    eventlet_pins, service_control, stability)

RUNTIME_ERROR_LOG = """[2026-11-25 10:00:00 +0000] [10] [INFO] Starting gunicorn 25.3.0
[2026-11-25 10:00:00 +0000] [10] [INFO] Listening at: http://0.0.0.0:8000 (10)
[2026-11-25 10:00:05 +0000] [10] [INFO] Handling signal: term
[2026-11-25 10:00:06 +0000] [10] [INFO] Shutting down: Master
[2026-11-25 10:01:00 +0000] [20] [INFO] Starting gunicorn 25.3.0
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/gunicorn/workers/geventlet.py", line 20, in <module>
    raise RuntimeError("eventlet worker requires eventlet 0.40.3 or higher")
RuntimeError: eventlet worker requires eventlet 0.40.3 or higher
"""


def test_why_reads_the_current_run_only(tmp_path):
    log = tmp_path / "gunicorn.log"
    log.write_text(RUNTIME_ERROR_LOG)
    why, evidence = stability.why_from_logs([str(log)])
    assert why == "RuntimeError: eventlet worker requires eventlet 0.40.3 or higher"
    assert not any("Handling signal" in e for e in evidence)


def test_why_names_gunicorns_error_and_its_cause(tmp_path):
    log = tmp_path / "gunicorn.log"
    log.write_text("[2026-11-25 10:00:00 +0000] [9] [DEBUG] Current configuration:\n  workers: 1\n"
                   "\nError: class uri 'eventlet' invalid or not found: \n\n[Traceback (most recent call last):\n"
                   '  File "/venv/gunicorn/workers/geventlet.py", line 29, in <module>\n'
                   '    raise RuntimeError("eventlet worker requires eventlet 0.40.3 or higher")\n'
                   "RuntimeError: eventlet worker requires eventlet 0.40.3 or higher\n]\n")
    why, evidence = stability.why_from_logs([str(log), str(tmp_path / "missing.log")])
    assert why == ("Error: class uri 'eventlet' invalid or not found: "
                   "RuntimeError: eventlet worker requires eventlet 0.40.3 or higher")
    assert len(evidence) == 2


def test_log_tail_sees_only_new_lines_and_a_replaced_file(tmp_path):
    log = tmp_path / "gunicorn.log"
    log.write_text("old\n")
    tail = stability.LogTail(str(log))
    assert tail.read() == []
    with open(log, "a") as f:
        f.write("new\n")
    assert tail.read() == ["new"]
    log.unlink()
    log.write_text("rotated\n")
    assert tail.read() == ["rotated"]


def test_imports_are_read_without_running_the_code():
    source = b"import os\nfrom gevent import monkey\nimport uvloop.loop as l\nfrom . import local\nraise SystemExit(1)\n"
    assert eventlet_pins.imported_modules(source) == {"os", "gevent", "uvloop"}
    assert eventlet_pins.imported_modules(b"def broken(:\n") == set()


def test_conflicts_are_removed_only_when_nothing_needs_them(tmp_path, monkeypatch):
    pkg = tmp_path / "AgentLocator"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "main.py").write_text("import flask\nimport uvloop\n")
    monkeypatch.setattr(eventlet_pins, "read_environment", lambda python, chdir, run_as=None: {
        "python": "3.11.7", "versions": {"gunicorn": "27.0.1", "eventlet": "0.41.3", "greenlet": "3.5.6",
                                         "gevent": "24.2.1", "uvloop": "0.21.0"},
        "required_by": {}})
    plan = eventlet_pins.plan("/venv/bin/python", str(tmp_path), "AgentLocator.main:app")
    assert plan["remove"] == ["gevent"]
    assert plan["keep"] == [{"package": "uvloop", "version": "0.21.0", "needed_by": ["AgentLocator/main.py imports it"]}]
    assert "gunicorn>=25,<26" in plan["requirements"] and any(r.startswith("greenlet>=") for r in plan["requirements"])
    assert any(p["package"] == "gunicorn" for p in plan["problems"])

    forced = eventlet_pins.plan("/venv/bin/python", str(tmp_path), "AgentLocator.main:app", ["eventlet==0.39.1"])
    assert forced["requirements"] == ["eventlet==0.39.1"]


def test_supervisord_include_dir_is_read_from_its_config(tmp_path):
    conf = tmp_path / "supervisord.conf"
    conf.write_text("[supervisord]\nlogfile=/tmp/x.log\n\n[include]\nfiles = conf.d/*.conf /etc/more/*.ini\n")
    assert service_control.supervisord_include_dir(str(conf)) == str(tmp_path / "conf.d")
    conf.write_text("[supervisord]\n")
    assert service_control.supervisord_include_dir(str(conf)) is None
    assert service_control.supervisord_include_dir(str(tmp_path / "missing.conf")) is None


def test_only_a_gunicorn_master_of_the_app_is_the_service(tmp_path):
    assert service_control.app_master(psutil, os.getpid(), "AgentLocator.main:app", str(tmp_path)) is None
    assert service_control.app_master(psutil, None, "AgentLocator.main:app", str(tmp_path)) is None
    pidfile = tmp_path / "gunicorn.pid"
    pidfile.write_text("12x\n")
    assert service_control.read_pidfile(str(pidfile)) is None
    pidfile.write_text("4242\n")
    assert service_control.read_pidfile(str(pidfile)) == 4242
