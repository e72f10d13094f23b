"""plugins/module_utils/probes/eventlet.py: the monkey_patch ast scan and the text parsers (no processes)."""

import textwrap

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import eventlet as probe


def scan(source):
    return probe.scan_monkey_patch(textwrap.dedent(source).encode(), "AgentLocator/main.py")


def test_first_statement_is_fine():
    calls = scan('''\
        """The app."""
        from __future__ import annotations
        import eventlet
        eventlet.monkey_patch()
        import requests
        from flask import Flask
        ''')
    assert calls == [{"file": "AgentLocator/main.py", "line": 4, "scope": "module", "before": []}]


def test_late_call_names_what_was_imported_before():
    calls = scan('''\
        import os
        import socket, ssl
        import requests
        from flask import Flask
        from .media import tone_frames
        import eventlet
        eventlet.monkey_patch(thread=False)
        ''')
    assert calls == [{"file": "AgentLocator/main.py", "line": 7, "scope": "module",
                      "before": ["socket", "ssl", "requests", "flask", ".media"]}]


def test_aliases_nested_blocks_functions_and_main_guard():
    calls = scan('''\
        from eventlet import monkey_patch as patch_all
        try:
            patch_all()
        except ImportError:
            pass
        import threading
        from eventlet import patcher
        if True:
            patcher.monkey_patch()

        def create_app():
            import eventlet
            eventlet.monkey_patch()

        if __name__ == "__main__":
            patch_all()
        ''')
    assert [(c["line"], c["scope"], c["before"]) for c in calls] == [
        (3, "module", []),
        (9, "module", ["threading"]),
        (13, "function create_app", None),
        (16, "main guard", None),
    ]


def test_other_monkey_patches_and_broken_files_are_ignored():
    assert scan("from gevent import monkey\nmonkey.patch_all()\nimport eventlet\nx.monkey_patch = 1\n") == []
    assert scan("def broken(:\n") == []


@pytest.mark.parametrize("command, worker_class", [
    ("/srv/app/.venv/bin/python -m gunicorn AgentLocator.main:app -k eventlet -w 1", "eventlet"),
    ("gunicorn --worker-class=eventlet app:app", "eventlet"),
    ("gunicorn --worker-class gunicorn.workers.geventlet.EventletWorker app:app", "eventlet"),
    ("bash -c 'exec gunicorn -keventlet app:app'", "eventlet"),
    ("gunicorn -k sync -w 4 app:app", "sync"),
    ("gunicorn app:app", None),
    (None, None),
])
def test_worker_class_in_a_command(command, worker_class):
    assert probe.worker_class_in(command) == worker_class


def test_worker_class_in_a_config_file(tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("import multiprocessing\nworkers = 1\nworker_class = 'eventlet'\n")
    assert probe.config_worker_class(str(conf)) == "eventlet"
    conf.write_text("worker_class = pick()\n")
    assert probe.config_worker_class(str(conf)) is None
    assert probe.config_worker_class(str(tmp_path / "absent.py")) is None


OLD_RUN = ["[2026-11-25 10:00:00 +0000] [100] [INFO] Starting gunicorn 25.3.0",
           "[2026-11-25 10:00:00 +0000] [100] [INFO] Listening at: http://0.0.0.0:8000 (100)",
           "RuntimeError: eventlet worker requires eventlet 0.40.3 or higher",
           "[2026-11-25 10:05:00 +0000] [100] [INFO] Handling signal: term",
           "[2026-11-25 10:05:00 +0000] [100] [INFO] Shutting down: Master",
           "[2026-11-25 10:05:00 +0000] [100] [INFO] Reason: Worker failed to boot."]
FAILED_START = ["/venv/lib/python3.11/site-packages/gunicorn/workers/geventlet.py:23: EventletDeprecationWarning: ",
                "Error: class uri 'eventlet' invalid or not found: ", "", "[Traceback (most recent call last):",
                "  File \"/venv/lib/python3.11/site-packages/eventlet/hubs/__init__.py\", line 80, in use_hub",
                "ModuleNotFoundError: No module named 'eventlet.hubs.select'", "]"]
GOOD_RUN = ["[2026-11-25 11:00:00 +0000] [200] [INFO] Starting gunicorn 25.3.0",
            "[2026-11-25 11:00:00 +0000] [200] [INFO] Listening at: http://0.0.0.0:8000 (200)",
            "[2026-11-25 11:00:00 +0000] [200] [INFO] Using worker: eventlet",
            "[2026-11-25 11:00:00 +0000] [201] [WARNING] The eventlet worker is DEPRECATED and will be removed in "
            "Gunicorn 26.0. Please migrate to gevent, gthread, or another supported worker type.",
            "[2026-11-25 11:30:00 +0000] [200] [CRITICAL] WORKER TIMEOUT (pid:201)"]


def test_current_run_is_the_running_masters_block():
    lines = OLD_RUN + FAILED_START + GOOD_RUN
    assert gunicorn.current_run(lines, [200]) == GOOD_RUN   # the failed start before it was another process
    warned = ["/venv/lib/python3.11/site-packages/gunicorn/workers/geventlet.py:23: EventletDeprecationWarning: ",
              "Eventlet is deprecated. It is currently being maintained in bugfix mode, and", "", "  import eventlet"]
    assert gunicorn.current_run(OLD_RUN + FAILED_START + warned + GOOD_RUN, [200]) == warned + GOOD_RUN
    assert gunicorn.current_run(OLD_RUN + GOOD_RUN, [200]) == GOOD_RUN
    assert gunicorn.current_run(OLD_RUN + FAILED_START, []) == FAILED_START   # nothing runs: the last run
    assert gunicorn.current_run(OLD_RUN, []) == OLD_RUN                       # ended runs keep their shutdown lines
    assert gunicorn.current_run([], []) == []


def test_scan_lines_classifies_eventlet_lines():
    found = probe.scan_lines(FAILED_START + GOOD_RUN)
    assert found["errors"] == [{"kind": "hub_invalid", "line": "ModuleNotFoundError: No module named 'eventlet.hubs.select'"}]
    assert found["class_uri"] == "Error: class uri 'eventlet' invalid or not found:"
    assert found["deprecation"][-1].startswith("The eventlet worker is DEPRECATED")   # gunicorn's prefix stripped
    assert found["worker_timeouts"] == 1
    old = probe.scan_lines(OLD_RUN)
    assert old["errors"] == [{"kind": "incompatible", "line": "RuntimeError: eventlet worker requires eventlet 0.40.3 or higher"}]


def test_scan_app_and_entry_file(tmp_path):
    pkg = tmp_path / "AgentLocator"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import eventlet\neventlet.monkey_patch()\n")
    (pkg / "main.py").write_text("import requests\nimport eventlet\neventlet.monkey_patch()\napp = object()\n")
    (pkg / "media.py").write_text("TONE = 1\n")
    found = probe.scan_app_monkey_patch(str(tmp_path), "AgentLocator.main:app")
    assert [(c["file"], c["line"], c["before"]) for c in found] == [
        ("AgentLocator/__init__.py", 2, []), ("AgentLocator/main.py", 3, ["requests"])]
    assert probe.entry_file(str(tmp_path), "AgentLocator.main:app") == "AgentLocator/main.py"
    assert probe.entry_file(str(tmp_path), "AgentLocator:app") == "AgentLocator/__init__.py"


def test_runner_configs_belong_to_this_checkout(tmp_path):
    units = tmp_path / "system"
    units.mkdir()
    (units / "agentlocator.service").write_text(
        "[Service]\nWorkingDirectory=/srv/app\nEnvironment=PORT=8123 EVENTLET_HUB=select\n"
        "ExecStart=/srv/app/.venv/bin/python -m gunicorn AgentLocator.main:app -k eventlet -w 1 -b 0.0.0.0:$PORT\n")
    (units / "staging.service").write_text(   # another checkout of the same app: not this service's runner
        "[Service]\nWorkingDirectory=/srv/staging\nExecStart=/srv/staging/.venv/bin/python -m gunicorn AgentLocator.main:app\n")
    conf = tmp_path / "agentlocator.conf"
    conf.write_text("[program:agentlocator]\ndirectory=/srv/app\ncommand=/srv/app/.venv/bin/gunicorn AgentLocator.main:app\n"
                    "  --worker-class eventlet\nenvironment=EVENTLET_NO_GREENDNS=\"yes\",EVENTLET_HUB=\"selects\"\n")
    found = probe.runner_configs("AgentLocator.main:app", "/srv/app", "/srv/app/.env", {"EVENTLET_HUB": "poll", "PORT": "8123"},
                                 unit_dirs=[str(units)], conf_globs=[str(conf)])
    assert found == [
        {"source": "/srv/app/.env", "kind": "env file", "env": {"EVENTLET_HUB": "poll"}, "worker_class": None},
        {"source": str(units / "agentlocator.service"), "kind": "systemd unit", "env": {"EVENTLET_HUB": "select"},
         "worker_class": "eventlet"},
        {"source": "%s [program:agentlocator]" % conf, "kind": "supervisord program",
         "env": {"EVENTLET_NO_GREENDNS": "yes", "EVENTLET_HUB": "selects"}, "worker_class": "eventlet"},
    ]
