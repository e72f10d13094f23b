"""plugins/module_utils/domain/gunicorn.py: command lines, bind specs, log lines (and logfile.parse_time)."""

import datetime
import shlex

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes.logfile import parse_time

VENV_PYTHON = "/srv/app/.venv/bin/python"
APP = "AgentLocator.main:app"
# The runbook's command as a supervisord/systemd unit starts it (argv as /proc/<pid>/cmdline has it).
RUNBOOK_ARGV = [VENV_PYTHON, "-m", "gunicorn", APP, "-k", "eventlet", "-w", "1", "-b", "0.0.0.0:8123",
                "--timeout", "120", "--preload"]


def stamp(text, pid=4242, level="INFO", time="2026-11-25 12:00:00 +0000"):
    """A line in gunicorn's default error-log format."""
    return "[%s] [%d] [%s] %s" % (time, pid, level, text)


# --- is_gunicorn_cmdline ---------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    RUNBOOK_ARGV,
    ["/srv/app/.venv/bin/gunicorn", APP, "-b", "0.0.0.0:8123"],
    ["gunicorn", APP],
    ["/usr/bin/python3", "/srv/app/.venv/bin/gunicorn", APP],        # the console script run by its interpreter
    ["/srv/app/.venv/bin/python3.11", "-m", "gunicorn", APP],
    ["gunicorn: master [AgentLocator.main:app]"],                     # setproctitle, one argv element
    ["gunicorn:", "master", "[AgentLocator.main:app]"],                # psutil splits a retitled cmdline on spaces
    ["gunicorn: worker [AgentLocator.main:app]"],
], ids=lambda a: " ".join(a)[:60])
def test_is_gunicorn_cmdline_true(argv):
    assert gunicorn.is_gunicorn_cmdline(argv) is True


@pytest.mark.parametrize("argv", [
    [],
    [VENV_PYTHON, "main.py"],
    [VENV_PYTHON, "-m", "flask", "--app", APP, "run"],
    ["/srv/app/.venv/bin/flask", "run", "--port", "5000"],
    ["python3", "-m", "http.server", "8123"],
    ["/usr/bin/python3", "/usr/bin/supervisord", "-n", "-c", "/etc/supervisor/supervisord.conf"],
    ["/usr/sbin/nginx", "-g", "daemon off;"],
], ids=lambda a: " ".join(a)[:60] or "empty")
def test_is_gunicorn_cmdline_false(argv):
    assert gunicorn.is_gunicorn_cmdline(argv) is False


def test_is_gunicorn_cmdline_with_interpreter_options():
    assert gunicorn.is_gunicorn_cmdline([VENV_PYTHON, "-u", "-m", "gunicorn", APP, "-b", "0.0.0.0:8123"]) is True


def test_is_gunicorn_cmdline_ignores_a_file_named_gunicorn():
    assert gunicorn.is_gunicorn_cmdline(["tail", "-f", "/var/log/gunicorn"]) is False


# --- parse_cmdline ----------------------------------------------------------------------------------
def test_parse_cmdline_runbook_command():
    s = gunicorn.parse_cmdline(RUNBOOK_ARGV)
    assert s["app"] == APP
    assert s["worker_class"] == "eventlet"
    assert s["workers"] == 1
    assert s["bind"] == ["0.0.0.0:8123"]
    assert s["timeout"] == 120
    assert s["preload"] is True
    assert s["daemon"] is False


def test_parse_cmdline_defaults_are_gunicorns():
    s = gunicorn.parse_cmdline(["/srv/app/.venv/bin/gunicorn", APP])
    assert (s["app"], s["worker_class"], s["workers"], s["timeout"], s["preload"], s["bind"]) == \
        (APP, "sync", 1, 30, False, ["127.0.0.1:8000"])


@pytest.mark.parametrize("argv, expected", [
    (["gunicorn", "--bind=unix:/run/app.sock", APP], {"bind": ["unix:/run/app.sock"], "app": APP}),
    (["gunicorn", "-b", "[::1]:9000", "-w4", APP], {"bind": ["[::1]:9000"], "workers": 4, "app": APP}),
    (["gunicorn", "-b", "0.0.0.0:8123", "--bind", "unix:/run/app.sock", APP],
     {"bind": ["0.0.0.0:8123", "unix:/run/app.sock"]}),
    (["gunicorn", "-b0.0.0.0:8123", "-t90", APP], {"bind": ["0.0.0.0:8123"], "timeout": 90}),
    (["gunicorn", "--workers=3", "--timeout=45", "--worker-class=gthread", "--threads", "8", APP],
     {"workers": 3, "timeout": 45, "worker_class": "gthread", "threads": 8}),
    (["gunicorn", "-k", "gunicorn.workers.geventlet.EventletWorker", APP], {"worker_class": "eventlet"}),
    (["gunicorn", "--chdir", "/srv/app", "--daemon", "--pid", "/run/agentlocator.pid", APP],
     {"chdir": "/srv/app", "daemon": True, "pidfile": "/run/agentlocator.pid", "app": APP}),
    (["gunicorn", "-D", "-p", "/run/a.pid", APP], {"daemon": True, "pidfile": "/run/a.pid"}),
    (["gunicorn", "--error-logfile", "/var/log/app/gunicorn.log", "--access-logfile", "-", APP],
     {"error_logfile": "/var/log/app/gunicorn.log", "access_logfile": "-", "app": APP}),
    (["gunicorn", "-c", "gunicorn.conf.py", APP], {"config": "gunicorn.conf.py", "app": APP}),
    # `-b 0.0.0.0:${PORT}` with PORT empty: the shell hands gunicorn "0.0.0.0:"
    (["gunicorn", APP, "-b", "0.0.0.0:"], {"bind": ["0.0.0.0:"], "app": APP}),
    (["gunicorn", "--preload", "--capture-output", "--reload", APP],
     {"preload": True, "capture_output": True, "reload": True}),
], ids=lambda v: " ".join(v[1:]) if isinstance(v, list) else None)
def test_parse_cmdline_options(argv, expected):
    s = gunicorn.parse_cmdline(argv)
    assert dict((k, s.get(k)) for k in expected) == expected


@pytest.mark.parametrize("argv", [
    ["/srv/venv/bin/python3", "-m", "gunicorn", "-c", "gunicorn.conf.py"],
    ["/srv/venv/bin/gunicorn", "-c", "gunicorn.conf.py"],
    ["/usr/bin/python3", "/srv/venv/bin/gunicorn", "--config", "gunicorn.conf.py"],
])
def test_parse_cmdline_without_an_app_spec_never_takes_the_program_for_it(argv):
    # The app comes from the config file's wsgi_app: the command line names none (not "gunicorn").
    s = gunicorn.parse_cmdline(argv)
    assert s["app"] is None and s["config"] == "gunicorn.conf.py"


def test_parse_cmdline_retitled_master_has_no_app_spec():
    # setproctitle replaces argv with "gunicorn: master [<proc_name>]"; proc_name is the app spec by
    # default but `-n` overrides it, so the parser does not guess (process.belongs_to_app then uses cwd).
    s = gunicorn.parse_cmdline(["gunicorn:", "master", "[AgentLocator.main:app]"])
    assert s["app"] is None
    assert s["bind"] == ["127.0.0.1:8000"]


def test_parse_cmdline_round_trips_format_command():
    command = gunicorn.format_command(VENV_PYTHON, APP, "8123", worker_class="eventlet", workers=1, timeout=120)
    s = gunicorn.parse_cmdline(shlex.split(command))
    assert (s["app"], s["worker_class"], s["workers"], s["bind"], s["timeout"], s["keepalive"], s["loglevel"]) == \
        (APP, "eventlet", 1, ["0.0.0.0:8123"], 120, 30, "debug")
    assert s["capture_output"] is True


@pytest.mark.parametrize("option", [
    ["--worker-connections", "1000"],
    ["--max-requests", "1000"],
    ["--graceful-timeout", "30"],
    ["-e", "PORT=8123"],
    ["--forwarded-allow-ips", "*"],
])
def test_parse_cmdline_unknown_option_values_are_not_the_app(option):
    s = gunicorn.parse_cmdline([VENV_PYTHON, "-m", "gunicorn", APP, "-b", "0.0.0.0:8123"] + option)
    assert s["app"] == APP


# --- normalize_worker_class ---------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    ("eventlet", "eventlet"),
    (" Eventlet ", "eventlet"),
    ("gunicorn.workers.geventlet.EventletWorker", "eventlet"),
    ("gevent", "gevent"),
    ("gunicorn.workers.ggevent.GeventWorker", "gevent"),
    ("gevent_pywsgi", "gevent"),
    ("gthread", "gthread"),
    ("sync", "sync"),
    ("gunicorn.workers.sync.SyncWorker", "sync"),
    ("tornado", "tornado"),
    (None, "sync"),
    ("", "sync"),
    ("uvicorn.workers.UvicornWorker", "uvicorn.workers.UvicornWorker"),
])
def test_normalize_worker_class(value, expected):
    assert gunicorn.normalize_worker_class(value) == expected


def test_normalize_worker_class_gthread_dotted_path():
    assert gunicorn.normalize_worker_class("gunicorn.workers.gthread.ThreadWorker") == "gthread"


# --- parse_bind ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, expected", [
    ("0.0.0.0:8123", {"family": "inet", "host": "0.0.0.0", "port": 8123}),
    ("127.0.0.1:5000", {"family": "inet", "host": "127.0.0.1", "port": 5000}),
    (" 0.0.0.0:8123 ", {"family": "inet", "host": "0.0.0.0", "port": 8123}),
    ("unix:/run/app.sock", {"family": "unix", "host": "/run/app.sock", "port": None}),
    ("fd://3", {"family": "fd", "host": "3", "port": None}),
    ("[::1]:9000", {"family": "inet6", "host": "::1", "port": 9000}),
    ("[::]:8123", {"family": "inet6", "host": "::", "port": 8123}),
    ("[::1]", {"family": "inet6", "host": "::1", "port": 8000}),
    ("localhost", {"family": "inet", "host": "localhost", "port": 8000}),
    (":8123", {"family": "inet", "host": "0.0.0.0", "port": 8123}),
    ("0.0.0.0:65535", {"family": "inet", "host": "0.0.0.0", "port": 65535}),
])
def test_parse_bind(spec, expected):
    assert gunicorn.parse_bind(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("0.0.0.0:", "'' is not a valid port number."),        # -b 0.0.0.0:${PORT} with PORT empty
    ("0.0.0.0:8O80", "'8O80' is not a valid port number."),  # the letter O: gunicorn's own example
    ("0.0.0.0:$PORT", "'$PORT' is not a valid port number."),
    ("0.0.0.0:65536", "'65536' is not a valid port number."),
    ("[::1]:abc", "'abc' is not a valid port number."),
])
def test_parse_bind_rejects_bad_ports_with_gunicorns_wording(spec, message):
    with pytest.raises(ValueError) as err:
        gunicorn.parse_bind(spec)
    assert str(err.value) == message


# --- split_app_spec -----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, expected", [
    (APP, ("AgentLocator.main", "app")),
    ("wsgi", ("wsgi", "application")),
    ("wsgi:", ("wsgi", "application")),
    ("AgentLocator.main:create_app()", ("AgentLocator.main", "create_app()")),
    (None, ("", "application")),
])
def test_split_app_spec(spec, expected):
    assert gunicorn.split_app_spec(spec) == expected


# --- parse_log_line --------------------------------------------------------------------------------------
@pytest.mark.parametrize("line, expected", [
    (stamp("Starting gunicorn 25.3.0"), {"event": "starting", "version": "25.3.0", "pid": 4242, "level": "INFO"}),
    (stamp("Listening at: http://0.0.0.0:8000 (4242)"),
     {"event": "listening", "url": "http://0.0.0.0:8000", "master": "4242"}),
    (stamp("Listening at: unix:/run/app.sock (4242)"), {"event": "listening", "url": "unix:/run/app.sock"}),
    # --reuse-port (gunicorn 25): the master holds no socket and names none - no url, not a bind.
    (stamp("Listening at:  (4242)"), {"event": "listening", "url": None, "master": "4242"}),
    (stamp("Using worker: eventlet"), {"event": "worker_class", "worker_class": "eventlet"}),
    (stamp("Booting worker with pid: 4250"), {"event": "worker_boot", "worker": "4250"}),
    (stamp("Handling signal: term"), {"event": "signal_term", "pid": 4242}),
    (stamp("Handling signal: hup"), {"event": "signal_other", "signal": "hup"}),
    (stamp("Shutting down: Master"), {"event": "master_shutdown"}),
    (stamp("Reason: Worker failed to boot."), {"event": "worker_failed_boot"}),
    (stamp("Reason: App failed to load."), {"event": "app_failed_load"}),
    (stamp("Exception in worker process", pid=4250, level="ERROR"), {"event": "worker_exception", "pid": 4250}),
    (stamp("WORKER TIMEOUT (pid:4250)", level="CRITICAL"),
     {"event": "worker_timeout", "worker": "4250", "level": "CRITICAL"}),
    (stamp("Worker (pid:4250) was sent SIGKILL! Perhaps out of memory?", level="ERROR"),
     {"event": "worker_sigkill", "worker": "4250"}),
    (stamp("Worker (pid:4250) exited with code 3.", level="ERROR"),
     {"event": "worker_exit", "worker": "4250", "code": "3"}),
    (stamp("Connection in use: ('0.0.0.0', 8123)", level="ERROR"),
     {"event": "connection_in_use", "addr": "('0.0.0.0', 8123)"}),
    (" * Running on http://127.0.0.1:5000", {"event": "dev_server", "url": "http://127.0.0.1:5000", "pid": None,
                                             "time": None}),
    ("WARNING: This is a development server. Do not use it in a production deployment.",
     {"event": "dev_server_banner"}),
    ("Error: '' is not a valid port number.", {"event": "invalid_port", "value": ""}),
    ("Error: '8O80' is not a valid port number.", {"event": "invalid_port", "value": "8O80"}),
    ("Traceback (most recent call last):", {"event": "traceback"}),
], ids=lambda v: v[:50] if isinstance(v, str) else None)
def test_parse_log_line_events(line, expected):
    event = gunicorn.parse_log_line(line + "\n")
    assert event is not None
    assert dict((k, event.get(k)) for k in expected) == expected
    assert event["line"] == line


def test_parse_log_line_keeps_the_time_text():
    event = gunicorn.parse_log_line(stamp("Handling signal: term", time="2026-11-25 12:00:03 +0000"))
    assert event["time"] == "2026-11-25 12:00:03 +0000"


@pytest.mark.parametrize("line", [
    stamp("Worker (pid:4250) was sent SIGTERM!"),
    stamp("Worker exiting (pid: 4250)", pid=4250),
    stamp("Control socket listening at /root/.gunicorn/gunicorn.ctl"),
    stamp("The eventlet worker is DEPRECATED and will be removed in Gunicorn 26.0.", level="WARNING"),
    '127.0.0.1 - - [25/Nov/2026:12:00:01 +0000] "GET /healthz HTTP/1.1" 200 16 "-" "curl/7.88.1"',
    "  bind: ['0.0.0.0:8000']",
    "",
])
def test_parse_log_line_ignores_untracked_lines(line):
    assert gunicorn.parse_log_line(line) is None


# --- scan_log ---------------------------------------------------------------------------------------
WORKER_BOOT_FAILURE = [
    stamp("Starting gunicorn 25.3.0"),
    stamp("Listening at: http://0.0.0.0:8123 (4242)"),
    stamp("Using worker: sync"),
    stamp("Booting worker with pid: 4250", pid=4250),
    stamp("Exception in worker process", pid=4250, level="ERROR"),
    "Traceback (most recent call last):",
    '  File "/srv/app/.venv/lib/python3.11/site-packages/gunicorn/arbiter.py", line 608, in spawn_worker',
    "    worker.init_process()",
    '  File "/srv/app/.venv/lib/python3.11/site-packages/gunicorn/workers/base.py", line 135, in init_process',
    "    self.load_wsgi()",
    '  File "/srv/app/.venv/lib/python3.11/site-packages/gunicorn/util.py", line 371, in import_app',
    "    mod = importlib.import_module(module)",
    "          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
    '  File "<frozen importlib._bootstrap>", line 1204, in _gcd_import',
    '  File "/srv/app/AgentLocator/main.py", line 3, in <module>',
    "    import x",
    "ModuleNotFoundError: No module named 'x'",
    stamp("Worker exiting (pid: 4250)", pid=4250),
    stamp("Worker (pid:4250) exited with code 3.", level="ERROR"),
    stamp("Shutting down: Master"),
    stamp("Reason: Worker failed to boot."),
]


def test_scan_log_worker_failed_to_boot():
    scanned = gunicorn.scan_log(line + "\n" for line in WORKER_BOOT_FAILURE)
    assert [e["event"] for e in scanned["events"]] == [
        "starting", "listening", "worker_class", "worker_boot", "worker_exception", "worker_exit",
        "master_shutdown", "worker_failed_boot"]
    assert len(scanned["tracebacks"]) == 1
    tb = scanned["tracebacks"][0]
    assert tb["exception"] == "ModuleNotFoundError: No module named 'x'"
    assert len(tb["frames"]) == 6          # only the last frames are kept
    assert tb["frames"][-1] == "    import x"
    assert tb["frames"][-2] == '  File "/srv/app/AgentLocator/main.py", line 3, in <module>'


def test_scan_log_preload_traceback_without_gunicorn_lines():
    # With --preload an import error kills the master: a bare traceback, no "Starting gunicorn".
    lines = [
        "Traceback (most recent call last):",
        '  File "/srv/app/AgentLocator/main.py", line 9, in <module>',
        '    TOKEN = os.environ["TWILIO_AUTH_TOKEN"]',
        '  File "<frozen os>", line 679, in __getitem__',
        "KeyError: 'TWILIO_AUTH_TOKEN'",
    ]
    scanned = gunicorn.scan_log(lines)
    assert scanned["events"] == []
    assert scanned["tracebacks"] == [{"frames": lines[1:4], "exception": "KeyError: 'TWILIO_AUTH_TOKEN'"}]


def test_scan_log_chained_tracebacks_are_two():
    lines = [
        "Traceback (most recent call last):",
        '  File "/srv/app/AgentLocator/config.py", line 4, in <module>',
        "    PORT = int(os.environ['PORT'])",
        "ValueError: invalid literal for int() with base 10: ''",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        '  File "/srv/app/AgentLocator/config.py", line 6, in <module>',
        "    raise RuntimeError('PORT must be a number')",
        "RuntimeError: PORT must be a number",
        stamp("Shutting down: Master"),
    ]
    scanned = gunicorn.scan_log(lines)
    assert [t["exception"] for t in scanned["tracebacks"]] == [
        "ValueError: invalid literal for int() with base 10: ''", "RuntimeError: PORT must be a number"]
    assert [e["event"] for e in scanned["events"]] == ["master_shutdown"]


def test_scan_log_traceback_cut_off_at_end_of_file():
    scanned = gunicorn.scan_log(["Traceback (most recent call last):", '  File "/srv/app/x.py", line 1, in <module>'])
    assert scanned["tracebacks"] == [{"frames": ['  File "/srv/app/x.py", line 1, in <module>'], "exception": None}]


def test_scan_log_traceback_interrupted_by_a_log_line():
    lines = ["Traceback (most recent call last):", '  File "/srv/app/x.py", line 1, in <module>',
             stamp("Worker exiting (pid: 4250)", pid=4250), stamp("Reason: Worker failed to boot.")]
    scanned = gunicorn.scan_log(lines)
    assert scanned["tracebacks"][0]["exception"] is None
    assert [e["event"] for e in scanned["events"]] == ["worker_failed_boot"]


def test_scan_log_dev_server_banner_and_periodic_restarts():
    lines = []
    for i, master in enumerate((5001, 5017, 5033)):
        t = "2026-11-25 12:00:%02d +0000" % (i * 12)
        lines += [stamp("Starting gunicorn 25.3.0", pid=master, time=t),
                  stamp("Listening at: http://0.0.0.0:8123 (%d)" % master, pid=master, time=t),
                  stamp("Handling signal: term", pid=master, time=t),
                  stamp("Shutting down: Master", pid=master, time=t)]
    lines += [" * Serving Flask app 'AgentLocator.main'", " * Debug mode: off",
              "WARNING: This is a development server. Do not use it in a production deployment.",
              " * Running on all addresses (0.0.0.0)", " * Running on http://127.0.0.1:5000",
              "Press CTRL+C to quit"]
    events = gunicorn.scan_log(lines)["events"]
    assert [e["master"] for e in events if e["event"] == "listening"] == ["5001", "5017", "5033"]
    assert sum(e["event"] == "signal_term" for e in events) == 3
    assert "http://127.0.0.1:5000" in [e.get("url") for e in events if e["event"] == "dev_server"]
    assert sum(e["event"] == "dev_server_banner" for e in events) == 1


# --- format_command -----------------------------------------------------------------------------------
def test_format_command_is_the_runbook_command():
    assert gunicorn.format_command(VENV_PYTHON, APP, "$PORT", worker_class="eventlet", workers=1, timeout=120) == (
        "/srv/app/.venv/bin/python -m gunicorn AgentLocator.main:app -k eventlet -w 1 -b 0.0.0.0:$PORT "
        "--timeout 120 --keep-alive 30 --log-level debug --capture-output --access-logfile - --error-logfile -")


def test_format_command_quotes_for_the_shell_but_keeps_port_expression():
    command = gunicorn.format_command("/opt/my app/bin/python", APP, "${PORT}", extra=["--preload"])
    assert command.startswith("'/opt/my app/bin/python' -m gunicorn ")
    assert " -b 0.0.0.0:${PORT} " in command      # left for the shell to expand
    assert command.endswith(" --preload")
    assert shlex.split(command)[0] == "/opt/my app/bin/python"


# --- logfile.parse_time -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("2026-11-25 12:00:03 +0000", datetime.datetime(2026, 11, 25, 12, 0, 3, tzinfo=datetime.timezone.utc)),
    ("2026-11-25 13:00:03 +0100", datetime.datetime(2026, 11, 25, 12, 0, 3, tzinfo=datetime.timezone.utc)),
    ("1970-01-01 00:00:00 +0000", datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)),
])
def test_parse_time(text, expected):
    assert parse_time(text) == expected.timestamp()


@pytest.mark.parametrize("text", [None, "", "25/Nov/2026:12:00:01 +0000", "2026-11-25 12:00:03"])
def test_parse_time_unparsable(text):
    assert parse_time(text) is None


@pytest.mark.parametrize("spec, port", [
    ("0.0.0.0:8000", 8000), ("[::1]:8001", 8001), ("http://127.0.0.1:8002", 8002), ("https://[::]:8443/", 8443),
    ("unix:/run/app.sock", None), ("fd://3", None), ("localhost", None), ("", None), (None, None),
])
def test_tcp_port_of_a_bind_or_a_listening_url(spec, port):
    assert gunicorn.tcp_port(spec) == port
