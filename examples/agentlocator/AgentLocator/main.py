"""AgentLocator: answers a Twilio call and streams a tone back over a WebSocket.

Routes:
  GET  /healthz          liveness probe
  POST /incoming_call    TwiML telling Twilio to open a Media Stream to us
  POST /stream_status    Twilio's stream status callback (form-encoded)
  WS   /ws/twilio-media  the Media Stream itself (JSON text frames)

Run it with gunicorn, e.g. ``python -m gunicorn AgentLocator.main:app -k sync``.
It must not call eventlet.monkey_patch(): gunicorn's eventlet worker has
already patched the interpreter before it imports this module.
"""

import base64
import json
import logging
import os
import sys
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Response, abort, jsonify, request
from flask_sock import Sock

from .media import tone_frames

MEDIA_STREAM_PATH = "/ws/twilio-media"
TWILIO_SUBPROTOCOL = "audio.twilio.com"
# Twilio sends a media frame every 20 ms while a call is up; this much silence
# means the peer is gone, and a sync worker must not stay pinned to it forever.
IDLE_TIMEOUT_S = 30

_WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def _make_logger():
    logger = logging.getLogger("agentlocator")
    # Own handler on stderr (not gunicorn's loggers): with --capture-output
    # gunicorn points the worker's stderr at its error log, so lines land there.
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s")
        )
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # avoid duplicates if someone configures root
    return logger


log = _make_logger()


def media_stream_url(public_base_url, request_host):
    """Build the wss:// URL Twilio should connect to.

    ``public_base_url`` (e.g. ``https://voice.example.com/``) wins when set;
    its path is kept as a prefix but empty segments are dropped, so a
    trailing slash never produces ``//``. Otherwise fall back to the
    request's Host header and assume TLS, as Twilio requires wss in production.
    """
    base = (public_base_url or "").strip()
    if base:
        if "://" not in base:
            base = "https://" + base
        parts = urlsplit(base)
        scheme = _WS_SCHEMES.get(parts.scheme.lower(), "wss")
        netloc = parts.netloc
        prefix = [seg for seg in parts.path.split("/") if seg]
    else:
        scheme, netloc, prefix = "wss", request_host, []
    path = "/" + "/".join(prefix + [MEDIA_STREAM_PATH.strip("/")])
    return urlunsplit((scheme, netloc, path, "", ""))


def _twiml_connect_stream(stream_url):
    # ElementTree escapes the attribute, so a hostile Host header cannot
    # inject markup into the TwiML.
    response = ET.Element("Response")
    connect = ET.SubElement(response, "Connect")
    ET.SubElement(connect, "Stream", url=stream_url)
    return ET.tostring(response, encoding="UTF-8", xml_declaration=True)


def _send_json(ws, message):
    ws.send(json.dumps(message, separators=(",", ":")))


def create_app():
    app = Flask(__name__)
    # flask-sock only negotiates a subprotocol listed here; Twilio offers
    # audio.twilio.com and expects it echoed back.
    app.config["SOCK_SERVER_OPTIONS"] = {"subprotocols": [TWILIO_SUBPROTOCOL]}
    sock = Sock(app)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.post("/incoming_call")
    def incoming_call():
        base_url = os.environ.get("PUBLIC_BASE_URL")
        # Werkzeug blanks a Host header with invalid characters; a stream URL
        # without a host would only fail later, inside Twilio.
        if not (base_url or request.host):
            abort(400, "set PUBLIC_BASE_URL or send a valid Host header")
        url = media_stream_url(base_url, request.host)
        log.info("incoming call CallSid=%s -> stream %s", request.form.get("CallSid", "-"), url)
        return Response(_twiml_connect_stream(url), mimetype="text/xml")

    @app.post("/stream_status")
    def stream_status():
        form = request.form
        log.info(
            "stream status CallSid=%s StreamSid=%s StreamEvent=%s",
            form.get("CallSid", "-"),
            form.get("StreamSid", "-"),
            form.get("StreamEvent", "-"),
        )
        return "", 204

    @sock.route(MEDIA_STREAM_PATH)
    def twilio_media(ws):
        handle_media_stream(ws)

    return app


def handle_media_stream(ws):
    """Speak the Twilio Media Streams protocol: one tone frame per inbound frame.

    The server only ever sends ``media``, ``mark`` and ``clear`` events; the
    loop ends on ``stop``, on idle timeout, or when the peer disconnects
    (flask-sock swallows the ConnectionClosed raised by receive()).
    """
    stream_sid = None
    tone = tone_frames()
    while True:
        raw = ws.receive(timeout=IDLE_TIMEOUT_S)
        if raw is None:
            log.warning("media stream %s idle for %ss, closing", stream_sid, IDLE_TIMEOUT_S)
            return
        try:
            message = json.loads(raw)
            event = message["event"]
        except (TypeError, ValueError, KeyError):
            log.warning("ignoring malformed media stream frame: %.80r", raw)
            continue

        if event == "connected":
            log.info("media stream connected protocol=%s", message.get("protocol"))
        elif event == "start":
            start = message.get("start", {})
            stream_sid = message.get("streamSid") or start.get("streamSid")
            log.info(
                "media stream start streamSid=%s callSid=%s format=%s",
                stream_sid,
                start.get("callSid"),
                start.get("mediaFormat"),
            )
        elif event == "media":
            if stream_sid is None:
                log.warning("media before start, ignored")
                continue
            payload = next(tone)
            _send_json(
                ws,
                {
                    "event": "media",
                    "streamSid": stream_sid,
                    "media": {"payload": base64.b64encode(payload).decode("ascii")},
                },
            )
            log.info("MEDIA_TX streamSid=%s bytes=%d", stream_sid, len(payload))
        elif event == "mark":
            # Twilio sends a mark to acknowledge one of ours once its audio has
            # played; echoing any mark back lets a test client check ordering.
            name = message.get("mark", {}).get("name")
            _send_json(ws, {"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})
        elif event == "stop":
            log.info("media stream stop streamSid=%s", stream_sid)
            return
        else:
            log.info("media stream event %r ignored", event)


app = create_app()

if __name__ == "__main__":
    # Development only; production runs under gunicorn.
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
