"""Issue 11, point 8: secrets never leave the host, host text is inert in the reports, and report files are
private and stay in doctor_report_dir - on real services, through the real playbooks.

The services print what real apps print: a database URL with its password on the command line
(`--env DATABASE_URL=postgresql://app:PW@db/x`), the auth token at startup, a client library's
`token VALUE`, a Twilio `AC<sid>:<secret>` pair, a service account's `private_key_id` in a traceback.
Every secret is random per test, so finding one anywhere is a leak, and the test also checks the
redacted evidence is still there (the variable's name, the URL's user and host).
"""

import json
import os
import secrets
import stat
import subprocess
from pathlib import Path

import jsonschema
import pytest

from doctor_run import PYTHON, ROOT, ansible_env, diagnose, layer, make_app, run_playbook, schema
from gunicorn_service import free_port
from test_stabilize import host, listening_pid, wait_for  # noqa: F401 (host: the stabilize tests' fixture)  # pylint: disable=unused-import


class Secrets:
    """One random value per kind of secret, and the environment that hands them to the app."""

    def __init__(self):
        self.db_password = "Pw" + secrets.token_hex(8)
        self.auth_token = secrets.token_hex(16)
        self.api_token = secrets.token_hex(12)
        self.account_sid = "AC" + secrets.token_hex(16)
        self.sid_secret = secrets.token_hex(16)
        self.key_id = secrets.token_hex(20)
        self.database_url = "postgresql://app:%s@db.internal:5432/voice" % self.db_password

    def env(self):
        return {"TWILIO_AUTH_TOKEN": self.auth_token, "VOICE_API_TOKEN": self.api_token,
                "TWILIO_CREDENTIALS": "%s:%s" % (self.account_sid, self.sid_secret), "GCP_KEY_ID": self.key_id,
                "DATABASE_URL": self.database_url}

    def needles(self):
        return [self.db_password, self.auth_token, self.api_token, self.sid_secret, self.key_id]


def leaky(text):
    """At import the app logs its configuration the careless way; /healthz fails with the database URL and the
    service account's key id in the exception (a traceback in gunicorn's log)."""
    text = text.replace("log = _make_logger()\n", (
        "log = _make_logger()\n"
        "log.info('startup: TWILIO_AUTH_TOKEN=%s', os.environ.get('TWILIO_AUTH_TOKEN'))\n"
        "log.info('twilio client: using token %s as %s', os.environ.get('VOICE_API_TOKEN'),"
        " os.environ.get('TWILIO_CREDENTIALS'))\n"), 1)
    old = '@app.get("/healthz")\n    def healthz():\n'
    assert old in text
    return text.replace(old, old + (
        "        raise RuntimeError('cannot reach %s with {\"private_key_id\": \"%s\"}'"
        " % (os.environ.get('DATABASE_URL'), os.environ.get('GCP_KEY_ID')))\n"), 1)


def hostile_markup(text):
    """/healthz fails with markup and a Markdown heading in its exception: both land in the log and the report."""
    old = '@app.get("/healthz")\n    def healthz():\n'
    return text.replace(old, old + "        raise RuntimeError('<script>alert(1)</script> ## injected heading')\n", 1)


def texts_of(directory):
    return dict((path.name, path.read_text()) for path in Path(directory).iterdir() if path.is_file())


def assert_no_secret(texts, needles):
    for name, text in texts.items():
        for needle in needles:
            assert needle not in text, "a secret (%s...) is in %s" % (needle[:6], name)


def assert_private(directory):
    for path in Path(directory).iterdir():
        if path.is_file():
            mode = stat.S_IMODE(os.stat(str(path)).st_mode)
            assert mode & 0o137 == 0, "%s is %04o, not 0640 or tighter" % (path.name, mode)


# --- diagnose --------------------------------------------------------------------------------------------------
def test_diagnose_redacts_command_line_log_and_traceback_secrets(services, tmp_path, port):
    s = Secrets()
    app_dir = make_app(tmp_path, leaky)
    env = dict(s.env(), PORT=str(port))
    env.pop("DATABASE_URL")              # on the command line instead, as `gunicorn --env` puts it
    services(app_dir, tmp_path / "gunicorn.log", bind="0.0.0.0:%d" % port, env=env, health_path=None,
             extra_args=["--env", "DATABASE_URL=%s" % s.database_url])
    get_healthz(port)                    # a traceback with the URL and the key id in the log
    wait_for_log(tmp_path / "gunicorn.log", "RuntimeError: cannot reach")
    log_text = (tmp_path / "gunicorn.log").read_text()
    assert all(needle in log_text for needle in s.needles())     # the app did print every one

    report, output = diagnose(tmp_path, {"doctor_chdir": str(app_dir), "doctor_log_file": str(tmp_path / "gunicorn.log")},
                              extra_args=["-vvv"])
    (tmp_path / "ansible-vvv.log").write_text(output)   # for a human reading a failure; checked below like the reports
    texts = dict(texts_of(tmp_path / "reports"), **{"ansible-playbook -vvv output": output})
    assert len(output) > 10000, "expected the full -vvv output"
    assert_no_secret(texts, s.needles())
    assert_private(tmp_path / "reports")
    # Redacted, not dropped: the evidence still says which variable, which database, which account - in the
    # report (the traceback) and in the probe's facts (the command line, the preload boot's output).
    assert report["verdict"] == "down" and report["failed_layer"] == "healthz"
    assert "RuntimeError: cannot reach postgresql://app:<redacted>@db.internal:5432/voice" in json.dumps(report)
    assert "--env DATABASE_URL=postgresql://app:<redacted>@db.internal:5432/voice" in output
    assert "startup: TWILIO_AUTH_TOKEN=<redacted>" in output
    assert "twilio client: using token <redacted> as %s:<redacted>" % s.account_sid in output


def test_a_password_and_token_in_doctor_public_base_url_stay_out_of_the_vvv_output_and_reports(services, tmp_path, port):
    """A user's public URL with basic-auth credentials (a preview environment behind a login): -vvv prints every
    module's arguments, and the report quotes the URL it probed. The password is masked there; the user, host and
    port stay so the evidence still says what was probed. A URL with a token in its query is refused in one line
    that does not repeat the token."""
    password, token = "Pw" + secrets.token_hex(8), secrets.token_hex(12)
    app_dir = make_app(tmp_path)
    services(app_dir, tmp_path / "gunicorn.log", bind="0.0.0.0:%d" % port, env={"PORT": str(port)})
    closed = free_port()                 # nothing answers there: the external layer fails fast, on loopback
    host_vars = {"doctor_chdir": str(app_dir), "doctor_log_file": str(tmp_path / "gunicorn.log"),
                 "doctor_public_base_url": "http://alice:%s@127.0.0.1:%d/preview" % (password, closed)}
    report, output = diagnose(tmp_path, host_vars, extra_args=["-vvv"])
    (tmp_path / "ansible-vvv.log").write_text(output)
    assert '"public_base_url": "http://alice:********@127.0.0.1:%d/preview"' % closed in output
    assert_no_secret(dict(texts_of(tmp_path / "reports"), **{"ansible-playbook -vvv output": output}), [password])
    external = layer(report, "external")
    assert external["status"] == "fail" and "127.0.0.1:%d/preview" % closed in json.dumps(external), external

    host_vars["doctor_public_base_url"] = "https://127.0.0.1:%d/preview?token=%s" % (closed, token)
    done = run_playbook("diagnose.yml", tmp_path, host_vars, ["-vvv"], check=False)
    assert done.returncode != 0
    assert "doctor_public_base_url='https://127.0.0.1:%d/preview?token=<redacted>' carries a query" % closed in done.stdout
    assert '"public_base_url": "https://127.0.0.1:%d/preview?token=********"' % closed in done.stdout
    assert token not in done.stdout and "Traceback" not in done.stdout


def test_per_host_markdown_escapes_markup_and_headings_from_the_host(services, tmp_path, port):
    """Host text with HTML and a newline followed by a Markdown heading: the traceback in the log, and the command
    line of the shell that started the master (`sh -c '"$@"; exit $?' NAME python -m gunicorn ...`, its $0 the
    hostile name), which the process layer quotes."""
    app_dir = make_app(tmp_path, hostile_markup)
    name = "<script>alert(1)</script>\n# Owned heading"
    services(app_dir, tmp_path / "gunicorn.log", bind="0.0.0.0:%d" % port, env={"PORT": str(port)}, health_path=None,
             wrapper=["sh", "-c", '"$@"; exit $?', name])
    get_healthz(port)
    wait_for_log(tmp_path / "gunicorn.log", "injected heading")
    report = diagnose(tmp_path, {"doctor_chdir": str(app_dir), "doctor_log_file": str(tmp_path / "gunicorn.log")})[0]

    whole = json.dumps(report)
    assert "\\n# Owned heading" in whole and "</script> ## injected" in whole   # the report carries both ...
    md = (tmp_path / "reports" / "target.md").read_text()
    assert "<script>" not in md                                                  # ... the page carries them inert
    assert "&lt;script>alert(1)&lt;/script> # Owned heading" in md              # on one line, in its table cell
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert not [h for h in headings if "Owned" in h or "injected" in h], headings
    for line in md.splitlines():
        if "alert(1)" in line:
            assert line.startswith(("| ", "- ")), "host text outside its cell or list item: %r" % line
    assert_private(tmp_path / "reports")


# --- host names that are no file names ------------------------------------------------------------------------
@pytest.mark.parametrize("playbook", ["diagnose.yml", "audit.yml"])
def test_host_names_cannot_write_outside_the_report_dir(tmp_path, playbook):
    app_dir = make_app(tmp_path)
    reports = tmp_path / "out" / "reports"        # ../evil.json would land in out/
    reports.parent.mkdir()
    target = {"ansible_connection": "local", "ansible_python_interpreter": PYTHON, "doctor_python": PYTHON,
              "doctor_app": "AgentLocator.main:app", "doctor_chdir": str(app_dir), "doctor_report_dir": str(reports),
              "doctor_stability_window": 0, "doctor_preload_boot": "never", "doctor_voice_checks": False,
              "doctor_port": 1}
    inventory = {"all": {"hosts": {"../evil": target, "a/b": target, "web1": target}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    before = set(walk(tmp_path))
    done = subprocess.run([str(Path(PYTHON).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory.json"),
                           str(ROOT / "playbooks" / playbook)], cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300, check=False)

    created = sorted(set(walk(tmp_path)) - before)
    outside = [p for p in created if p != str(reports) and not p.startswith(str(reports) + os.sep)]
    assert not outside, "written outside doctor_report_dir: %s\n%s" % (outside, done.stdout[-3000:])
    assert not (reports / "a").exists() and not [p for p in created if "evil" in p]
    assert "inventory host name '../evil' cannot name a report file" in done.stdout, done.stdout[-3000:]
    assert (reports / "web1.json").is_file()
    jsonschema.validate(json.loads((reports / "web1.json").read_text()), schema())
    if playbook == "audit.yml":
        audit = json.loads((reports / "audit.json").read_text())
        assert sorted(audit["reports"]) == ["../evil", "a/b", "web1"]   # listed, not dropped
        for found in audit["reports"].values():
            jsonschema.validate(found, schema())
        assert "cannot name a report file" in audit["reports"]["a/b"]["error"]["message"]
    assert_private(reports)


def walk(top):
    for root, dirs, files in os.walk(str(top)):
        for name in dirs + files:
            yield os.path.join(root, name)


# --- stabilize ----------------------------------------------------------------------------------------------------
def test_stabilize_verify_and_report_carry_no_secret(host, tmp_path):
    """An earlier run of the app on a wrong port with the database URL on its command line (a stray stabilize
    stops and lists); the service's /healthz fails with the database URL and key id: verify fails with the log's
    traceback as evidence, stabilize rolls back, and neither the -vvv output nor HOST.stabilize.json holds a secret."""
    s = Secrets()
    host.app_dir = make_app(tmp_path / "leaky", leaky)
    host.env_file.write_text(host.env_file.read_text() + "".join("%s=%s\n" % kv for kv in sorted(s.env().items())))
    wrong = free_port()
    # --env first: the report keeps 120 characters of a command line, and the venv's path (longer in a CI clone) comes first.
    host.strays.append(host.spawn([PYTHON, "-m", "gunicorn", "--env", "DATABASE_URL=%s" % s.database_url,
                                   "AgentLocator.main:app", "-b", "0.0.0.0:%d" % wrong, "--no-control-socket",
                                   "--error-logfile", str(tmp_path / "wrong.log")], host.app_dir))
    wait_for(lambda: listening_pid(wrong), 20, "the earlier run on a wrong port")
    # verify waits doctor_verify_timeout for a 200 that never comes; the worker must boot and log its 500 within it.
    done = run_playbook("stabilize.yml", tmp_path, host.vars(
        doctor_service_manager="standalone", doctor_verify_timeout=15, doctor_preload_boot="never"), ["-vvv"], check=False)
    (tmp_path / "ansible-vvv.log").write_text(done.stdout)
    log_text = host.log.read_text() if host.log.exists() else ""
    assert s.db_password in log_text and s.key_id in log_text, "the service never logged its secrets"
    assert done.returncode != 0 and "is not up and stable" in done.stdout, done.stdout[-3000:]
    host.assert_strays_gone()

    report_path = tmp_path / "reports" / "target.stabilize.json"
    texts = dict(texts_of(tmp_path / "reports"), **{"ansible-playbook -vvv output": done.stdout})
    assert_no_secret(texts, s.needles())
    assert_private(tmp_path / "reports")
    record = json.loads(report_path.read_text())
    assert record["result"] in ("rolled_back", "failed") and "postgresql://app:<redacted>@db.internal" in record["summary"]
    stopped = [a for a in record["actions"] if a["action"] == "stopped process"]
    # (the command line is cut to fit the line inside the password: still redacted)
    assert stopped and "--env DATABASE_URL=postgresql://app:<redacted>" in stopped[0]["target"], record["actions"]
    jsonschema.validate(json.loads((tmp_path / "reports" / "target.json").read_text()), schema())


def test_service_state_failure_output_is_redacted(tmp_path):
    """A standalone start script that fails printing its configuration: service_state's message quotes it."""
    s = Secrets()
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho \"DATABASE_URL=%s\"\necho \"twilio: token %s %s:%s\"\nexit 3\n" % (
        s.database_url, s.api_token, s.account_sid, s.sid_secret))
    script.chmod(0o755)
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{"hosts": "target", "gather_facts": False, "tasks": [{
        "sre.gunicorn_doctor.service_state": {
            "app": "AgentLocator.main:app", "chdir": str(tmp_path), "manager": "standalone", "name": "voice",
            "state": "started", "pidfile": str(tmp_path / "gunicorn.pid"), "start_script": str(script),
            "start_timeout": 5}}]}]))
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"target": {"ansible_connection": "local",
                                                                  "ansible_python_interpreter": PYTHON}}}}))
    done = subprocess.run([str(Path(PYTHON).parent / "ansible-playbook"), "-i", str(inventory), str(playbook), "-vvv"],
                          cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=120, check=False)
    assert done.returncode != 0 and "exited with 3" in done.stdout, done.stdout[-3000:]
    assert "postgresql://app:<redacted>@db.internal" in done.stdout and s.account_sid in done.stdout
    assert_no_secret({"service_state -vvv output": done.stdout}, [s.db_password, s.api_token, s.sid_secret])


# --- helpers ----------------------------------------------------------------------------------------------------
def wait_for_log(log, needle, timeout=20):
    wait_for(lambda: log.exists() and needle in log.read_text(), timeout, "%r in %s" % (needle, log))


def get_healthz(port):
    import urllib.request
    try:
        urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=3).read()
    except OSError:
        pass
