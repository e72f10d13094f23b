"""The bundled AgentLocator demo, served by a real gunicorn, sync and eventlet."""

import base64
import json
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import websocket

from gunicorn_service import GunicornService

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "agentlocator"
sys.path.insert(0, str(APP_DIR))  # for the in-process URL test at the end
from AgentLocator.main import media_stream_url  # noqa: E402

STREAM_SID = "MZ00000000000000000000000000000001"
SILENCE_FRAME = b"\xff" * 160  # 20 ms of mu-law silence at 8 kHz

WORKER_ENV = {
    "sync": {},
    # As the deployment runs the eventlet worker (see examples/agentlocator/README.md).
    "eventlet": {"EVENTLET_NO_GREENDNS": "yes", "EVENTLET_HUB": "selects"},
}


@pytest.fixture(scope="module", params=["sync", "eventlet"])
def demo(request, tmp_path_factory):
    worker_class = request.param
    log_path = tmp_path_factory.mktemp(f"gunicorn-{worker_class}") / "error.log"
    service = GunicornService(
        app_dir=APP_DIR,
        app_spec="AgentLocator.main:app",
        worker_class=worker_class,
        log_path=log_path,
        extra_args=["--timeout", "60"],
        env={"PUBLIC_BASE_URL": "https://voice.example.com/", **WORKER_ENV[worker_class]},
    )
    service.start()
    try:
        service.wait_ready(timeout=20)
        assert service.children, "no worker process recorded"
        yield service
    finally:
        service.stop()
        survivors = service.surviving_children()
        assert not survivors, f"workers outlived the master: {[p.pid for p in survivors]}"


def _post(url, fields):
    body = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    return urllib.request.urlopen(req, timeout=10)


def test_healthz(demo):
    with urllib.request.urlopen(demo.url("/healthz"), timeout=10) as resp:
        assert resp.status == 200
        assert json.load(resp) == {"status": "ok"}


def test_incoming_call_twiml(demo):
    with _post(demo.url("/incoming_call"), {"CallSid": "CA123", "From": "+15550100"}) as resp:
        assert resp.status == 200
        assert resp.headers.get_content_type() == "text/xml"
        root = ET.fromstring(resp.read())
    assert root.tag == "Response"
    stream = root.find("./Connect/Stream")
    assert stream is not None
    assert stream.get("url") == "wss://voice.example.com/ws/twilio-media"


def test_stream_status(demo):
    with _post(
        demo.url("/stream_status"),
        {"CallSid": "CA123", "StreamSid": STREAM_SID, "StreamEvent": "stream-started"},
    ) as resp:
        assert resp.status == 204
        assert resp.read() == b""


def test_media_stream(demo):
    ws = websocket.create_connection(
        demo.url("/ws/twilio-media", scheme="ws"), subprotocols=["audio.twilio.com"], timeout=10
    )
    try:
        assert ws.getsubprotocol() == "audio.twilio.com"
        payload = base64.b64encode(SILENCE_FRAME).decode()
        outbound = [
            {"event": "connected", "protocol": "Call", "version": "1.0.0"},
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": STREAM_SID,
                "start": {
                    "streamSid": STREAM_SID,
                    "callSid": "CA123",
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            },
            *(
                {
                    "event": "media",
                    "streamSid": STREAM_SID,
                    "media": {
                        "track": "inbound",
                        "chunk": str(i),
                        "timestamp": str(20 * i),
                        "payload": payload,
                    },
                }
                for i in range(1, 6)
            ),
            {"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "after-5"}},
            {"event": "stop", "streamSid": STREAM_SID, "stop": {"callSid": "CA123"}},
        ]
        for message in outbound:
            ws.send(json.dumps(message))

        received = []
        while True:  # the server closes the socket after "stop"
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            assert opcode == websocket.ABNF.OPCODE_TEXT, f"non-text frame, opcode {opcode}"
            received.append(json.loads(data))
    finally:
        ws.close()

    assert {m["event"] for m in received} <= {"media", "mark", "clear"}
    media = [m for m in received if m["event"] == "media"]
    assert len(media) >= 5
    for m in media:
        assert m["streamSid"] == STREAM_SID
        assert len(base64.b64decode(m["media"]["payload"])) == 160
    assert {"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "after-5"}} in received
    demo.wait_for_log("MEDIA_TX", timeout=5)
    assert f"MEDIA_TX streamSid={STREAM_SID} bytes=160" in demo.log_text()


# The URL rules are pure logic; checking them in-process covers the cases one
# gunicorn (with a single PUBLIC_BASE_URL) cannot.
@pytest.mark.parametrize(
    "base, host, expected",
    [
        ("https://voice.example.com", "ignored", "wss://voice.example.com/ws/twilio-media"),
        ("https://voice.example.com/", "ignored", "wss://voice.example.com/ws/twilio-media"),
        ("http://10.0.0.5:8000//", "ignored", "ws://10.0.0.5:8000/ws/twilio-media"),
        ("https://example.com/voice//", "ignored", "wss://example.com/voice/ws/twilio-media"),
        ("voice.example.com", "ignored", "wss://voice.example.com/ws/twilio-media"),
        ("", "abc.ngrok.app", "wss://abc.ngrok.app/ws/twilio-media"),
        (None, "127.0.0.1:8000", "wss://127.0.0.1:8000/ws/twilio-media"),
    ],
)
def test_media_stream_url(base, host, expected):
    assert media_stream_url(base, host) == expected
