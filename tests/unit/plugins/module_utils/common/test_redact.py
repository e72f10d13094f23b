"""plugins/module_utils/common/redact.py: no private key, token or password leaves the host in a result."""

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact, url_secrets

# A syntactically real (but throw-away, truncated) PKCS#8 body: what a service-account JSON holds.
KEY_BODY = ("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
            "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n")
PEM = "-----BEGIN PRIVATE KEY-----\n" + KEY_BODY + "-----END PRIVATE KEY-----\n"


def test_pem_private_key_block():
    text = "credentials file starts with:\n" + PEM + "and then more output"
    out = redact(text)
    assert out == "credentials file starts with:\n<redacted private key>\nand then more output"


@pytest.mark.parametrize("kind", ["RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY"])
def test_pem_private_key_kinds(kind):
    out = redact("x -----BEGIN %s-----\n%s-----END %s----- y" % (kind, KEY_BODY, kind))
    assert out == "x <redacted private key> y"


def test_truncated_private_key_is_redacted_to_the_end():
    out = redact("output_tail: -----BEGIN PRIVATE KEY-----\n" + KEY_BODY)
    assert out.rstrip("\n") == "output_tail: <redacted private key>"   # `$` may leave the final newline


def test_two_keys_in_one_string_both_go():
    out = redact(PEM + "between\n" + PEM)
    assert out == "<redacted private key>\nbetween\n<redacted private key>\n"


def test_certificate_is_not_a_secret():
    cert = "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE\n-----END CERTIFICATE-----"
    assert redact(cert) == cert


def test_service_account_json_keeps_its_shape():
    account = {
        "type": "service_account",
        "project_id": "agentlocator-prod",
        "private_key_id": "1f2e3d4c5b6a",
        "private_key": PEM,
        "client_email": "voice@agentlocator-prod.iam.gserviceaccount.com",
    }
    out = redact(json.dumps(account))
    assert "MIIE" not in out and "BEGIN PRIVATE KEY" not in out
    parsed = json.loads(out)
    assert parsed["private_key"] == "<redacted>" and parsed["private_key_id"] == "<redacted>"
    assert dict(parsed, private_key=PEM, private_key_id="1f2e3d4c5b6a") == account   # nothing else changed


def test_private_key_json_value_without_pem_header():
    out = redact('{"private_key": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\nMzEf", "type": "service_account"}')
    assert out == '{"private_key": "<redacted>", "type": "service_account"}'


@pytest.mark.parametrize("text, expected", [
    ("token=abc123", "token=<redacted>"),
    ("GET /cb?token=abc123&CallSid=CA42 HTTP/1.1", "GET /cb?token=<redacted>&CallSid=CA42 HTTP/1.1"),
    ("TWILIO_AUTH_TOKEN=0123456789abcdef", "TWILIO_AUTH_TOKEN=<redacted>"),
    ("password: hunter2", "password: <redacted>"),
    ("db_passwd=hunter2;host=db", "db_passwd=<redacted>;host=db"),
    ("client_secret = s3cr3t, next", "client_secret = <redacted>, next"),
    ("OPENAI_API_KEY=sk-live-abc", "OPENAI_API_KEY=<redacted>"),
    ("api-key: k-1", "api-key: <redacted>"),
    ("X-Auth-Token: abc.def", "X-Auth-Token: <redacted>"),
])
def test_token_and_password_assignments(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "PORT=8123",
    "[2026-11-25 12:00:00 +0000] [4242] [INFO] Listening at: http://0.0.0.0:8123 (4242)",
    "KeyError: 'TWILIO_AUTH_TOKEN'",              # a name, not a value
    "EVENTLET_HUB=selects",
    "PUBLIC_BASE_URL=https://voice.example.com",
])
def test_ordinary_text_is_untouched(text):
    assert redact(text) == text


@pytest.mark.parametrize("text, secret", [
    ('TWILIO_AUTH_TOKEN="0123456789abcdef"', "0123456789abcdef"),
    ("DB_PASSWORD='hunter2'", "hunter2"),
    ('{"auth_token": "0123456789abcdef"}', "0123456789abcdef"),
])
def test_quoted_secret_values(text, secret):
    assert secret not in redact(text)


@pytest.mark.parametrize("text, secret", [
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGciOiJIUzI1NiJ9"),
    ("Authorization: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
])
def test_authorization_header_credentials(text, secret):
    assert secret not in redact(text)


def test_nested_structures():
    facts = {
        "port": 8123,
        "valid": True,
        "nothing": None,
        "boot": {"output_tail": ["Booting", "token=abc123", PEM],
                 "frames": ("  File app.py, line 3", "password=x")},
        "env_names": ["PORT", "TWILIO_AUTH_TOKEN"],
        "credentials": [{"path": "/etc/gcp.json", "head": '{"private_key": "' + KEY_BODY.replace("\n", "\\n") + '"}'}],
    }
    before = json.dumps(facts, sort_keys=True)
    out = redact(facts)
    assert out == {
        "port": 8123,
        "valid": True,
        "nothing": None,
        "boot": {"output_tail": ["Booting", "token=<redacted>", "<redacted private key>\n"],
                 "frames": ["  File app.py, line 3", "password=<redacted>"]},
        "env_names": ["PORT", "TWILIO_AUTH_TOKEN"],
        "credentials": [{"path": "/etc/gcp.json", "head": '{"private_key": "<redacted>"}'}],
    }
    assert json.dumps(facts, sort_keys=True) == before   # the input is not modified


# --- issue 11: what passed through before ----------------------------------------------------------------
TWILIO_SID = "AC" + "4f0e1d2c3b4a59687766554433221100"
API_KEY_SID = "SK" + "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
AUTH_TOKEN = "9c1e5a7b3d2f4e6a8b0c1d2e3f4a5b6c"


@pytest.mark.parametrize("text, secret, kept", [
    # Command lines: gunicorn --env, a worker started by hand, a Celery broker.
    ("/srv/venv/bin/python -m gunicorn AgentLocator.main:app --env DATABASE_URL=postgresql://app:S3cretPW@db.internal:5432/voice",
     "S3cretPW", "postgresql://app:<redacted>@db.internal:5432/voice"),
    ("celery -A AgentLocator worker --broker redis://:R3disPa55@cache:6379/0", "R3disPa55", "redis://:<redacted>@cache:6379/0"),
    ("amqp://voice:guest-pw@rabbit:5672//", "guest-pw", "amqp://voice:<redacted>@rabbit:5672//"),
    ("mysql+pymysql://voice:p%40ss/w0rd@db/x?charset=utf8", "p%40ss/w0rd", "mysql+pymysql://voice:<redacted>@db/x"),
    # A traceback line of SQLAlchemy/psycopg quoting the URL.
    ("sqlalchemy.exc.OperationalError: could not connect to 'postgresql://app:S3cretPW@10.0.0.5/voice'",
     "S3cretPW", "'postgresql://app:<redacted>@10.0.0.5/voice'"),
    ("GET https://%s:%s@api.twilio.com/2010-04-01/Accounts.json" % (TWILIO_SID, AUTH_TOKEN), AUTH_TOKEN,
     "https://%s:<redacted>@api.twilio.com" % TWILIO_SID),
])
def test_url_passwords_in_any_scheme(text, secret, kept):
    out = redact(text)
    assert secret not in out and kept in out


@pytest.mark.parametrize("text, secret, kept", [
    # A command line shortened to fit a report line, cut inside the password: no `@` follows.
    ("4242 (python -m gunicorn app:app --env DATABASE_URL=postgresql://app:S3cretPW", "S3cretPW",
     "DATABASE_URL=postgresql://app:<redacted>"),
    ("redis://:R3disPa55", "R3disPa55", "redis://:<redacted>"),
])
def test_url_cut_inside_its_password(text, secret, kept):
    out = redact(text)
    assert secret not in out and out.endswith(kept)


@pytest.mark.parametrize("text", [
    "ssh://git@github.com/agentlocator/voice.git",     # a user without a password is no secret
    "Listening at: http://0.0.0.0:8123",               # a port at the end is no cut password
    "Listening at: http://[::1]:8123",
    "bind http://127.0.0.1:8123/",
    "postgresql://app@db.internal/voice",
    "[2026-11-25 12:00:00 +0000] [4242] [INFO] Listening at: http://0.0.0.0:8123 (4242)",
    "curl -sS http://127.0.0.1:8123/healthz",
])
def test_urls_without_a_password_stay(text):
    assert redact(text) == text


@pytest.mark.parametrize("text, secret, kept", [
    ("SECRET_KEY=flask-5f3c9e1a2b", "flask-5f3c9e1a2b", "SECRET_KEY=<redacted>"),
    ("STRIPE_KEY: rk_prod_51Hxyz", "rk_prod_51Hxyz", "STRIPE_KEY: <redacted>"),
    ('{"ENCRYPTION_KEY": "aGVsbG8gd29ybGQgc2VjcmV0"}', "aGVsbG8gd29ybGQgc2VjcmV0", '{"ENCRYPTION_KEY": "<redacted>"}'),
    ("FERNET_KEY='two words key'", "two words", "FERNET_KEY='<redacted>'"),
    ('"private_key_id": "8d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c"', "8d3c2b1a0f9e", '"private_key_id": "<redacted>"'),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI", "AWS_SECRET_ACCESS_KEY=<redacted>"),
    ("MYSQL_PWD=hunter22 mysql -u voice", "hunter22", "MYSQL_PWD=<redacted> mysql -u voice"),
    ("environ{'TWILIO_API_SECRET': 'Zm9vYmFyYmF6'}", "Zm9vYmFyYmF6", "'TWILIO_API_SECRET': '<redacted>'"),
    ("SMTP_PASSWORD_PRIMARY=p4ss", "p4ss", "SMTP_PASSWORD_PRIMARY=<redacted>"),
    # A JSON text logged inside a JSON string: the escaped quotes stay, the value goes.
    ('{"msg": "env {\\"REFRESH_TOKEN\\": \\"rt-0b1c2d3e\\"}"}', "rt-0b1c2d3e", '\\"REFRESH_TOKEN\\": \\"<redacted>\\"'),
])
def test_secret_names_key_token_secret_password(text, secret, kept):
    out = redact(text)
    assert secret not in out and kept in out


@pytest.mark.parametrize("text, secret", [
    ("twilio.base.exceptions.TwilioRestException: HTTP 401 error: using token 0123456789abcdef0123", "0123456789abcdef0123"),
    ("Authorization: token ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("requests: headers={'Authorization': 'Bearer ya29.a0AfH6SMBx3Example'}", "ya29.a0AfH6SMBx3Example"),
    ("sent Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N", "dozjgNryP4J3jVmNHl0w5N"),
    ("Cookie: session=eyJ1c2VyIjoiYWRtaW4ifQ.ZXhh.sig; theme=dark", "eyJ1c2VyIjoiYWRtaW4ifQ"),
    ("callback /cb?access_token=ab12cd34ef56 answered 401", "ab12cd34ef56"),
    ("openai.AuthenticationError: Incorrect API key provided: sk-proj-AbCdEfGhIjKlMnOpQrStUvWx", "AbCdEfGhIjKlMnOpQrStUvWx"),
    ("stripe.error.AuthenticationError: Invalid API Key provided: sk_live_51HqAbCdEfGhIjKl", "sk_live_51HqAbCdEfGhIjKl"),
    ("maps?key=AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI&q=x", "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI"),
])
def test_token_value_bearer_and_known_shapes(text, secret):
    assert secret not in redact(text)


@pytest.mark.parametrize("text", [
    "curl -u %s:%s https://api.twilio.com/2010-04-01/Accounts.json" % (TWILIO_SID, AUTH_TOKEN),
    "twilio: Client(%s:%s) rejected (20003)" % (TWILIO_SID, AUTH_TOKEN),
    "api key %s:%s" % (API_KEY_SID, "kW3bTzvZ9w8y7x6VuTsRqPoNmLkJiHgF"),
])
def test_twilio_sid_secret_pairs(text):
    out = redact(text)
    assert AUTH_TOKEN not in out and "kW3bTzvZ9w8y7x6VuTsRqPoNmLkJiHgF" not in out
    assert (TWILIO_SID in out) or (API_KEY_SID in out)      # the SID says which account: kept


@pytest.mark.parametrize("text, secret, kept", [
    ("/srv/venv/bin/python app.py --db-password hunter22 --bind 0.0.0.0:8123", "hunter22", "--bind 0.0.0.0:8123"),
    ('worker --auth-token "tok with spaces" -w 2', "tok with spaces", "-w 2"),
    ("--password=hunter22", "hunter22", "--password=<redacted>"),
])
def test_secret_options_on_a_command_line(text, secret, kept):
    out = redact(text)
    assert secret not in out and kept in out


def test_argv_list_item_after_a_secret_option():
    argv = ["python", "-m", "worker", "--api-key", "k-8d7c6b5a", "--port", "8123", "--token", "-"]
    assert redact(argv) == ["python", "-m", "worker", "--api-key", "<redacted>", "--port", "8123", "--token", "-"]


@pytest.mark.parametrize("text", [
    "nothing listens on 8123",
    "[2026-11-25 12:00:00 +0000] [4243] [INFO] Booting worker with pid: 4243",
    "[2026-11-25 12:00:31 +0000] [4242] [CRITICAL] WORKER TIMEOUT (pid:4243)",
    "master 4242 (gunicorn: master [AgentLocator.main:app]) cwd /srv/agentlocator",
    '  File "/srv/agentlocator/AgentLocator/main.py", line 12, in <module>',
    "EVENTLET_HUB=selects",
    "EVENTLET_NO_GREENDNS=yes PORT=8123 OLDPWD=/root PWD=/srv/agentlocator",
    "KeyError: 'SECRET_KEY'",
    "os.environ['TWILIO_AUTH_TOKEN'] is not set",
    "set doctor_twilio_auth_token to the token the app validates with, then diagnose again",
    "the password file /run/secrets/db is not readable by www-data",
    '-H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" -H "Sec-WebSocket-Protocol: audio.twilio.com"',
    "    for key, value in sorted(env.items(), key=lambda i: i[0]):",
    "gunicorn --keyfile /etc/ssl/private/voice.key --certfile /etc/ssl/voice.pem",
    "-----BEGIN CERTIFICATE-----",
    "CallSid=CA0123456789abcdef0123456789abcdef",
])
def test_ordinary_evidence_stays_readable(text):
    assert redact(text) == text


@pytest.mark.parametrize("text", [
    "DATABASE_URL=postgresql://app:S3cretPW@db/x TWILIO_AUTH_TOKEN=%s" % AUTH_TOKEN,
    'Authorization: Bearer abc123def456 {"private_key_id": "0a1b2c"}',
    "curl -u %s:%s" % (TWILIO_SID, AUTH_TOKEN),
    "token 0123456789abcdef0123 --password 'x y'",
])
def test_redaction_is_idempotent(text):
    """Facts are redacted on the host and the report again on the controller: the second pass changes nothing."""
    once = redact(text)
    assert redact(once) == once


@pytest.mark.parametrize("run", ["token_", "sk-", "http://", "eyJabcdefghij.", "a://b:c", " --api_key"])
def test_a_hostile_log_line_costs_linear_time(run):
    """A log line the app's owner controls must not stall the probe: 600 KB of one repeated run redacts in well
    under the bound (a quadratic pattern takes hours). In a child process, so a regression fails, not hangs."""
    collections = next(p for p in sys.path if os.path.isdir(os.path.join(p, "ansible_collections", "sre")))
    code = ("import sys; from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact; "
            "redact(sys.stdin.read())")
    subprocess.run([sys.executable, "-c", code], input=run * (600000 // len(run)), text=True, timeout=30, check=True,
                   env=dict(os.environ, PYTHONPATH=collections))


@pytest.mark.parametrize("url, secrets", [
    ("https://voice.example.com", set()),
    ("https://alice:Pw0rd@voice.example.com:8443/app", {"Pw0rd"}),
    ("https://voice.example.com/?token=t0k&lang=en&api_key=k3y", {"t0k", "k3y"}),
    ("https://alice@voice.example.com", set()),          # a user alone is who, not a secret
    ("http://[::1:8080", set()),                          # not a URL: the module's validation says so
    (None, set()),
])
def test_url_secrets_are_the_password_and_secret_query_values(url, secrets):
    """What the probe module adds to no_log_values, so -vvv's invocation masks them and keeps the rest."""
    assert url_secrets(url) == secrets
