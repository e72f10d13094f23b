"""plugins/module_utils/redact.py: no private key, token or password leaves the host in a result."""

import json

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.redact import redact

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
    assert parsed["private_key"] == "<redacted>"
    assert dict(parsed, private_key=PEM) == account   # nothing else changed


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
