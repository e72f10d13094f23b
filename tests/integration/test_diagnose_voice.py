"""diagnose.yml against the real demo voice app under gunicorn: the voice layer, one real fault per cause.

Every service gets PUBLIC_BASE_URL=https://127.0.0.1:<a closed port>: the host the TwiML must name, and a
loopback address, so the controller-side external layer never leaves the machine (it finds nothing
there; these tests judge the voice layer only). Credentials are generated per test: a real RSA key in a
service-account JSON file.
"""

import base64
import json
import secrets
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from doctor_run import cause, diagnose, layer, make_app
from gunicorn_service import free_port

EVENTLET_ENV = {"EVENTLET_NO_GREENDNS": "yes", "EVENTLET_HUB": "selects"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Services inherit os.environ: each test decides the variables the voice layer reads."""
    for name in ("PUBLIC_BASE_URL", "GOOGLE_APPLICATION_CREDENTIALS", "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID",
                 "EVENTLET_NO_GREENDNS", "EVENTLET_HUB", "GUNICORN_CMD_ARGS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pem_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def write_credentials(path, pem, **changes):
    data = {"type": "service_account", "project_id": "doctor-test", "private_key_id": secrets.token_hex(20),
            "private_key": pem, "client_email": "voice@doctor-test.iam.gserviceaccount.com",
            "client_id": "1234567890", "token_uri": "https://oauth2.googleapis.com/token"}
    data.update(changes)
    path.write_text(json.dumps(data, indent=2))
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


def voice_service(services, tmp_path, port, edit=None, worker_class="sync", env=None, credentials=True, pem=None,
                  base=None):
    app_dir = make_app(tmp_path, edit)
    base = base or "https://127.0.0.1:%d" % free_port()
    service_env = {"PORT": str(port), "PUBLIC_BASE_URL": base}
    if credentials is True:
        service_env["GOOGLE_APPLICATION_CREDENTIALS"] = str(write_credentials(tmp_path / "gcp-sa.json", pem))
    elif credentials:
        service_env["GOOGLE_APPLICATION_CREDENTIALS"] = str(credentials)
    if worker_class == "eventlet":
        service_env.update(EVENTLET_ENV)
    service_env.update(env or {})
    service = services(app_dir, tmp_path / "gunicorn.log", bind="0.0.0.0:%d" % port, worker_class=worker_class,
                       env=service_env, extra_args=["--timeout", "60"])
    service.public_base_url = base
    return service


def run(tmp_path, service, extra_args=(), **host_vars):
    variables = dict({"doctor_chdir": str(service.app_dir), "doctor_log_file": str(tmp_path / "gunicorn.log")},
                     **host_vars)
    return diagnose(tmp_path, variables, extra_args)


def checks(report):
    return {c["name"]: c for c in layer(report, "voice")["checks"]}


def voice_causes(report):
    return [c["id"] for c in report["causes"] if c["layer"] == "voice"]


# --- healthy ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("worker_class", ["sync", "eventlet"])
def test_healthy_voice_app(services, tmp_path, port, pem_key, worker_class):
    service = voice_service(services, tmp_path, port, worker_class=worker_class, pem=pem_key)
    base = service.public_base_url
    report = run(tmp_path, service)[0]

    assert voice_causes(report) == [], report["causes"]
    assert layer(report, "voice")["status"] == "pass", layer(report, "voice")
    found = checks(report)
    assert 'Stream url="wss://%s/ws/twilio-media"' % base.split("://")[1] in found["TwiML webhook"]["detail"]
    assert "-> 204" in found["status callback"]["detail"]
    assert "-> 101" in found["WebSocket handshake"]["detail"]
    assert "audio.twilio.com echoed" in found["WebSocket handshake"]["detail"]
    assert "all 50 media payloads 160 bytes" in found["media round trip"]["detail"]
    # MEDIA_TX lines the app logged during the call are the evidence of audio going out.
    assert found["MEDIA_TX in the log"]["status"] == "pass"
    assert "50 MEDIA_TX line(s)" in found["MEDIA_TX in the log"]["detail"]
    assert "service_account key" in found["Google credentials"]["detail"]
    assert "mode 0600" in found["Google credentials"]["detail"]
    if worker_class == "sync":
        assert "under -k sync the call held one of 1 worker(s)" in found["media round trip"]["detail"]
    else:
        assert "-k sync" not in found["media round trip"]["detail"]
    # The call costs about a second, not more.
    assert report["timings"]["voice"] < 3.0, report["timings"]


# --- Google credentials -------------------------------------------------------------------------------
def test_missing_credentials_file(services, tmp_path, port):
    absent = tmp_path / "keys" / "gcp-sa.json"
    service = voice_service(services, tmp_path, port, credentials=absent)
    report = run(tmp_path, service)[0]
    found = cause(report, "gcp_credentials_missing")
    assert found["severity"] == "fail"
    assert "GOOGLE_APPLICATION_CREDENTIALS points to %s" % absent in found["evidence"][0]
    assert "does not exist" in found["evidence"][0]
    assert "master %d" % service.pid in found["evidence"][0]
    assert str(absent) in found["remedy"]
    assert layer(report, "voice")["status"] == "fail"
    assert report["failed_layer"] == "voice"


@pytest.mark.parametrize("content, expected", [
    ('{"type": "service_account", "project_id": "doctor-test",\n', "is not valid JSON"),
    (None, "has empty private_key, client_email"),
])
def test_invalid_credentials_file(services, tmp_path, port, pem_key, content, expected):
    path = tmp_path / "gcp-sa.json"
    if content is None:
        write_credentials(path, pem_key, private_key="", client_email="")
    else:
        path.write_text(content)
    service = voice_service(services, tmp_path, port, credentials=path)
    report = run(tmp_path, service)[0]
    found = cause(report, "gcp_credentials_missing")
    assert any(expected in e for e in found["evidence"]), found["evidence"]
    assert str(path) in found["remedy"]
    assert voice_causes(report) == ["gcp_credentials_missing"]


# --- TwiML and the status callback --------------------------------------------------------------------
def naive_join(text):
    """The runbook's // bug: the stream URL is the base URL with the path glued on."""
    old = "        url = media_stream_url(base_url, request.host)\n"
    assert old in text
    return text.replace(old, '        url = base_url.replace("https://", "wss://", 1) + MEDIA_STREAM_PATH\n')


def test_twiml_double_slash(services, tmp_path, port, pem_key):
    closed = free_port()
    service = voice_service(services, tmp_path, port, edit=naive_join, pem=pem_key, base="https://127.0.0.1:%d/" % closed)
    report = run(tmp_path, service)[0]
    found = cause(report, "twiml_double_slash")
    assert found["twilio_error"] == 31923
    bad = "wss://127.0.0.1:%d//ws/twilio-media" % closed
    assert bad in found["evidence"][0]
    assert "Strip the trailing / of PUBLIC_BASE_URL (now https://127.0.0.1:%d/" % closed in found["remedy"]
    assert "wss://127.0.0.1:%d/ws/twilio-media" % closed in found["remedy"]
    assert voice_causes(report) == ["twiml_double_slash"]


def status_200_with_body(text):
    old = '        return "", 204\n'
    assert old in text
    return text.replace(old, '        return "ok", 200\n')


def test_status_callback_answering_200_with_a_body(services, tmp_path, port, pem_key):
    service = voice_service(services, tmp_path, port, edit=status_200_with_body, pem=pem_key)
    report = run(tmp_path, service)[0]
    found = cause(report, "status_callback_not_204")
    assert found["severity"] == "warn"
    assert "/stream_status" in found["evidence"][0] and "-> 200 OK, 2 bytes: 'ok'" in found["evidence"][0]
    assert "200 OK with 2 bytes" in found["remedy"]
    assert voice_causes(report) == ["status_callback_not_204"]
    assert layer(report, "voice")["status"] == "warn"


# --- the WebSocket --------------------------------------------------------------------------------------
def no_subprotocol(text):
    old = '    app.config["SOCK_SERVER_OPTIONS"] = {"subprotocols": [TWILIO_SUBPROTOCOL]}\n'
    assert old in text
    return text.replace(old, "")


def test_websocket_without_the_subprotocol(services, tmp_path, port, pem_key):
    service = voice_service(services, tmp_path, port, edit=no_subprotocol, pem=pem_key)
    report = run(tmp_path, service)[0]
    found = cause(report, "ws_subprotocol_missing")
    assert found["twilio_error"] == 31920
    assert "101 Switching Protocols with no Sec-WebSocket-Protocol header" in found["evidence"][0]
    assert 'SOCK_SERVER_OPTIONS"] = {"subprotocols": ["audio.twilio.com"]}' in found["remedy"]
    assert "http://127.0.0.1:%d/ws/twilio-media" % port in found["remedy"]
    assert voice_causes(report) == ["ws_subprotocol_missing"]
    # The call itself still works, so the report says the format is fine once the handshake is fixed.
    assert checks(report)["media round trip"]["status"] == "pass"


def plain_route(text):
    old = ("    @sock.route(MEDIA_STREAM_PATH)\n"
           "    def twilio_media(ws):\n"
           "        handle_media_stream(ws)\n")
    assert old in text
    return text.replace(old, ("    @app.route(MEDIA_STREAM_PATH, methods=[\"GET\", \"POST\"])\n"
                              "    def twilio_media():\n"
                              "        return \"media stream\"\n"))


def test_plain_http_route_at_the_websocket_path(services, tmp_path, port, pem_key):
    service = voice_service(services, tmp_path, port, edit=plain_route, pem=pem_key)
    report = run(tmp_path, service)[0]
    found = cause(report, "ws_handshake_failed")
    assert found["twilio_error"] == 31920
    assert "-> 400 BAD REQUEST" in found["evidence"][0]
    assert "not 101 Switching Protocols" in found["evidence"][0]
    assert "@sock.route" in found["remedy"]
    assert voice_causes(report) == ["ws_handshake_failed"]
    assert checks(report)["media round trip"]["status"] == "skip"


def pcm16_frames(text):
    """Answer each inbound frame with 20 ms of 16 kHz 16-bit PCM (640 bytes) instead of mu-law."""
    old = "            payload = next(tone)\n"
    assert old in text
    text = text.replace("import base64\n", "import base64\nimport math\nimport struct\n", 1)
    pcm = ("            payload = b\"\".join(struct.pack(\"<h\", int(8000 * math.sin(2 * math.pi * 440 * n / 16000)))\n"
           "                              for n in range(320))\n")
    return text.replace(old, pcm)


def test_pcm16_frames_are_not_mulaw(services, tmp_path, port, pem_key):
    service = voice_service(services, tmp_path, port, edit=pcm16_frames, pem=pem_key)
    report = run(tmp_path, service)[0]
    found = cause(report, "media_format_invalid")
    assert found["twilio_error"] == 31924
    assert "media.payload of 640 bytes, not 160" in found["evidence"][0]
    assert "16-bit PCM at 16 kHz" in found["evidence"][0]
    assert found["evidence"][0].startswith("frame 1 at ")
    assert "50 of 51 frames" in found["evidence"][1]
    assert "resample it to 8 kHz" in found["remedy"]
    assert voice_causes(report) == ["media_format_invalid"]
    assert "bytes=640" in checks(report)["MEDIA_TX in the log"]["detail"]


# --- secrets never leave the host -----------------------------------------------------------------------
def validate_signature(text):
    """The app checks X-Twilio-Signature itself (its own code, not ours): a 403 unless it matches."""
    text = text.replace("import base64\n", "import base64\nimport hashlib\nimport hmac\n", 1)
    old = "    def incoming_call():\n"
    assert old in text
    return text.replace(old, old + (
        "        token = os.environ[\"TWILIO_AUTH_TOKEN\"].encode()\n"
        "        signed = os.environ[\"PUBLIC_BASE_URL\"].rstrip(\"/\") + request.path\n"
        "        signed += \"\".join(k + v for k, v in sorted(request.form.items()))\n"
        "        want = base64.b64encode(hmac.new(token, signed.encode(), hashlib.sha1).digest()).decode()\n"
        "        if not hmac.compare_digest(want, request.headers.get(\"X-Twilio-Signature\", \"\")):\n"
        "            abort(403)\n"))


def test_no_secret_in_verbose_output_or_reports(services, tmp_path, port, pem_key):
    token = secrets.token_hex(16)
    service = voice_service(services, tmp_path, port, edit=validate_signature, pem=pem_key, env={"TWILIO_AUTH_TOKEN": token})
    report, output = run(tmp_path, service, extra_args=["-vvv"], doctor_twilio_auth_token=token)
    (tmp_path / "ansible-vvv.log").write_text(output)   # for a human reading a failure; checked below like the reports

    # The signed webhook got through (the app accepted our signature), the key file was read and judged.
    assert voice_causes(report) == [], report["causes"]
    assert "X-Twilio-Signature over https://127.0.0.1:" in checks(report)["TwiML webhook"]["detail"]
    assert "service_account key" in checks(report)["Google credentials"]["detail"]

    body = [line for line in pem_key.splitlines() if not line.startswith("-----")]
    needles = [token, body[1], body[len(body) // 2], body[-1], base64.b64encode(token.encode()).decode()]
    texts = {"ansible-playbook -vvv output": output}
    for path in (tmp_path / "reports").iterdir():
        texts[path.name] = path.read_text()
    assert "target.json" in texts and "target.md" in texts
    assert len(output) > 10000, "expected the full -vvv output"
    for name, text in texts.items():
        for needle in needles:
            assert needle not in text, "a secret is in %s" % name
        assert "BEGIN PRIVATE KEY" not in text, name
