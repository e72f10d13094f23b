"""diagnose.yml on the demo voice app turned into the other shape Twilio offers: a one-way <Start><Stream> (a
transcriber that only listens) with its WebSocket at /media/in, not at the default doctor_ws_path; and the
TwiML faults of either shape (ws://, a relative url, verbs after <Connect>).

The services are real gunicorn (sync and eventlet) with flask-sock; the helpers and the environment come from
test_diagnose_voice (same PUBLIC_BASE_URL on a closed loopback port, same generated Google key).
"""

import pytest

import test_diagnose_external
import test_diagnose_voice
from doctor_run import cause, layer
from gunicorn_service import free_port
from test_diagnose_voice import checks, run, voice_causes, voice_service

# The fixtures of the modules whose services these tests reuse: pytest finds them by these names.
clean_env = test_diagnose_voice.clean_env
pem_key = test_diagnose_voice.pem_key
pki = test_diagnose_external.pki
proxies = test_diagnose_external.proxies

MEDIA_PATH = "/media/in"


def start_stream(url_edit=None):
    """The demo app as a transcriber: <Start><Stream url=".../media/in" track="both_tracks"> with a <Parameter>,
    then <Say> and <Pause> (the call goes on), and a media handler that reads and logs, never answers."""
    def edit(text):
        old = 'MEDIA_STREAM_PATH = "/ws/twilio-media"\n'
        assert old in text
        text = text.replace(old, 'MEDIA_STREAM_PATH = "%s"\n' % MEDIA_PATH)
        old = ('    connect = ET.SubElement(response, "Connect")\n'
               '    ET.SubElement(connect, "Stream", url=stream_url)\n')
        assert old in text
        text = text.replace(old, (
            '    start = ET.SubElement(response, "Start")\n'
            '    stream = ET.SubElement(start, "Stream", url=%s, track="both_tracks")\n'
            '    ET.SubElement(stream, "Parameter", name="agent", value="7")\n'
            '    ET.SubElement(response, "Say").text = "This call is transcribed."\n'
            '    ET.SubElement(response, "Pause", length="60")\n') % (url_edit or "stream_url"))
        start = text.index("            payload = next(tone)\n")
        end = text.index('            log.info("MEDIA_TX streamSid=%s bytes=%d", stream_sid, len(payload))\n')
        end = text.index("\n", end) + 1
        return text[:start] + ('            log.info("MEDIA_RX streamSid=%s track=%s", stream_sid, '
                               'message["media"].get("track"))\n') + text[end:]
    return edit


@pytest.mark.parametrize("worker_class", ["sync", "eventlet"])
def test_start_stream_at_its_own_path_is_healthy(services, tmp_path, port, pem_key, worker_class):
    service = voice_service(services, tmp_path, port, edit=start_stream(), worker_class=worker_class, pem=pem_key)
    public = service.public_base_url.split("://")[1]
    report = run(tmp_path, service)[0]

    assert voice_causes(report) == [], report["causes"]
    assert layer(report, "voice")["status"] == "pass", layer(report, "voice")
    found = checks(report)
    twiml = found["TwiML webhook"]["detail"]
    assert '<Start><Stream url="wss://%s%s" track="both_tracks">, a one-way fork' % (public, MEDIA_PATH) in twiml
    assert "then <Say>, <Pause>" in twiml and "custom parameters agent" in twiml
    # The WebSocket was found where the TwiML points, not at the default /ws/twilio-media.
    handshake = found["WebSocket handshake"]
    assert handshake["status"] == "pass"
    assert "GET ws://127.0.0.1:%d%s" % (port, MEDIA_PATH) in handshake["detail"]
    assert "the path of the TwiML's <Stream url>" in handshake["detail"]
    call = found["media round trip"]
    assert call["status"] == "pass"
    assert "a one-way" in call["detail"] and "start tracks inbound+outbound" in call["detail"]
    assert "nothing came back, as a one-way stream expects" in call["detail"]
    assert found["MEDIA_TX in the log"]["status"] == "skip"
    # The app really heard both tracks of the call.
    log = (tmp_path / "gunicorn.log").read_text()
    assert "track=inbound" in log and "track=outbound" in log
    assert "media stream start" in log and "media stream stop" in log


def test_start_stream_behind_nginx_is_healthy_inside_and_out(services, proxies, pki, tmp_path, port, pem_key):
    """The whole path a real call takes: nginx terminating TLS on the public URL, the TwiML naming
    wss://PUBLIC/media/in; the external layer's wss check goes to that path too, not to doctor_ws_path."""
    proxy_port = free_port()
    public = "https://127.0.0.1:%d" % proxy_port
    service = voice_service(services, tmp_path, port, edit=start_stream(), pem=pem_key, base=public)
    proxies(port, port=proxy_port)
    report = run(tmp_path, service, doctor_ca_bundle=pki["ca"])[0]

    assert report["verdict"] == "healthy", report["causes"]
    wss = next(c for c in layer(report, "external")["checks"] if c["name"] == "wss handshake")
    assert wss["status"] == "pass" and wss["detail"].startswith(
        "wss://127.0.0.1:%d%s -> 101" % (proxy_port, MEDIA_PATH)), wss
    assert checks(report)["media round trip"]["status"] == "pass"


@pytest.mark.parametrize("url_edit, code, words", [
    ('stream_url.replace("wss://", "ws://", 1)', 31922, "uses ws://, Twilio only connects to wss://"),
    ('"%s"' % MEDIA_PATH, None, "'%s' is relative" % MEDIA_PATH),
])
def test_start_stream_url_not_wss_fails(services, tmp_path, port, pem_key, url_edit, code, words):
    service = voice_service(services, tmp_path, port, edit=start_stream(url_edit), pem=pem_key)
    public = service.public_base_url.split("://")[1]
    report = run(tmp_path, service)[0]

    found = cause(report, "twiml_invalid")
    assert found["severity"] == "fail" and found["twilio_error"] == code, found
    assert any(words in e for e in found["evidence"]), found["evidence"]
    assert '<Start><Stream url="wss://%s%s"/></Start> followed by the call\'s next verb' % (public, MEDIA_PATH) in \
        found["remedy"]
    assert voice_causes(report) == ["twiml_invalid"]
    assert report["failed_layer"] == "voice"
    # The stream itself works once the URL is right: the handshake reached /media/in on this app.
    assert checks(report)["WebSocket handshake"]["status"] == "pass"
    assert checks(report)["media round trip"]["status"] == "pass"


def verbs_after_connect(text):
    old = '    ET.SubElement(connect, "Stream", url=stream_url)\n'
    assert old in text
    return text.replace(old, old + '    ET.SubElement(response, "Say").text = "Goodbye."\n'
                                   '    ET.SubElement(response, "Hangup")\n')


def test_verbs_after_connect_warn(services, tmp_path, port, pem_key):
    service = voice_service(services, tmp_path, port, edit=verbs_after_connect, pem=pem_key)
    report = run(tmp_path, service)[0]

    found = cause(report, "twiml_invalid")
    assert found["severity"] == "warn" and found["twilio_error"] is None
    assert any("<Say>, <Hangup> after <Connect> never run while the stream is up" in e for e in found["evidence"])
    assert "move those verbs before <Connect>" in found["remedy"]
    assert voice_causes(report) == ["twiml_invalid"]
    assert layer(report, "voice")["status"] == "warn"
    assert checks(report)["TwiML webhook"]["status"] == "warn"
    # The two-way call is today's: audio back, mark echoed.
    assert "all 50 media payloads 160 bytes" in checks(report)["media round trip"]["detail"]


def test_a_stream_on_another_public_host_is_valid_and_not_run_against_this_app(services, tmp_path, port, pem_key):
    """The TwiML forks the call audio to a media host of its own (wss://media.example.net/...): valid TwiML, Twilio
    streams to any wss:// host. The doctor says the media WebSocket is served elsewhere (a warning) and does not
    run the call against this app - nor connect to that host (loopback only)."""
    other = "wss://media.example.net%s" % MEDIA_PATH
    service = voice_service(services, tmp_path, port, edit=start_stream('"%s"' % other), pem=pem_key)
    report = run(tmp_path, service)[0]

    assert voice_causes(report) == [], report["causes"]
    found = checks(report)
    assert found["TwiML webhook"]["status"] == "pass", found["TwiML webhook"]
    assert '<Start><Stream url="%s" track="both_tracks">, a one-way fork' % other in found["TwiML webhook"]["detail"]
    assert "valid: Twilio streams to any wss:// host" in found["TwiML webhook"]["detail"]
    assert found["WebSocket handshake"]["status"] == "warn"
    assert "the TwiML streams to %s" % other in found["WebSocket handshake"]["detail"]
    assert "served elsewhere" in found["WebSocket handshake"]["detail"]
    assert found["media round trip"]["status"] == "skip"
    assert "not run against this app" in found["media round trip"]["detail"]
    assert layer(report, "voice")["status"] == "warn"
    # Nothing opened this app's media WebSocket, and the external layer did not try one on the public URL either.
    assert "media stream start" not in (tmp_path / "gunicorn.log").read_text()
    wss = next(c for c in layer(report, "external")["checks"] if c["name"] == "wss handshake")
    assert wss["status"] == "skip" and "served elsewhere" in wss["detail"], wss
