"""The voice layer: judge_voice on the facts the probe records, inside the whole verdict, and the
probe's own pieces against real loopback servers (the demo app under werkzeug, a plain HTTP server)."""

import copy
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import host as host_probe
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import voice as judge_voice
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import twilio
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import voice
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges.shared import Layer

import test_verdict   # the healthy facts and the contract's invariants of every report

PORT = 8123
LOCAL = "http://127.0.0.1:%d" % PORT
URL = "wss://voice.example.com/ws/twilio-media"
SID = "MZ" + "a" * 32
DEMO = Path(__file__).resolve().parents[5] / "examples" / "agentlocator"


def closed_port():
    """A loopback port nothing listens on (the kernel just gave it out and took it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(path, status, reason, body="", content_type="text/html; charset=utf-8"):
    return {"method": "POST", "url": LOCAL + path, "host_header": "voice.example.com", "forwarded_proto": "https",
            "signed_url": "https://voice.example.com" + path, "status": status, "reason": reason,
            "content_type": content_type, "body_bytes": len(body), "body_head": body[:600], "error": None, "ms": 2.0}


def twiml(url=URL, verb="Connect", parameters=(), after="", attrs=""):
    body = '<Response><%s><Stream url="%s"%s/></%s>%s</Response>' % (verb, url, attrs, verb, after)
    t = request("/incoming_call", 200, "OK", body, "text/xml; charset=utf-8")
    parsed = twilio.parse_twiml(body)
    for s in parsed["streams"]:
        s.pop("parameter_values")
        s["parameters"] = list(parameters)
    t["parsed"] = parsed
    return t


def round_trip(media=50, sizes=None, problems=(), closed_before_stop=False):
    closed = {"at_ms": 985 if not closed_before_stop else 120, "code": 1000, "reason": "",
              "before_stop": closed_before_stop}
    return {"stream_sid": SID, "planned_media": 50, "sent_media": 50 if not closed_before_stop else 6,
            "media_start_ms": 0, "max_send_lag_ms": 0.7, "stop_at_ms": 984 if not closed_before_stop else None,
            "received": media + 1, "events": {"media": media, "mark": 1} if media else {"mark": 1},
            "media_sizes": sizes if sizes is not None else ({"160": media} if media else {}),
            "first_media_ms": 3 if media else None, "last_media_ms": 981 if media else None, "mark_echoed": True,
            "after_stop": 0, "problems": list(problems), "problem_count": len(problems),
            "closed_by_app": closed, "receive_error": None, "send_error": None}


def voice_facts(worker_class="sync", workers=1):
    """What probes/voice.collect returns for the healthy demo app (a real run, trimmed)."""
    key_accept = twilio.ws_accept("dGhlIHNhbXBsZSBub25jZQ==")
    return {
        "public_base_url": "https://voice.example.com",
        "public_base_url_source": "PUBLIC_BASE_URL in the environment of master 4242 (/proc/4242/environ)",
        "public_base": twilio.split_base_url("https://voice.example.com"),
        "env_public_base_url": "https://voice.example.com",
        "local_base": LOCAL,
        "paths": {"incoming_call": "/incoming_call", "stream_status": "/stream_status", "ws": "/ws/twilio-media"},
        "signed": True, "env_source": "the environment of master 4242 (/proc/4242/environ)",
        "worker": {"pid": 4242, "worker_class": worker_class, "workers": workers, "timeout": 30},
        "healthz_stable": True, "http_skipped": None,
        "twiml": twiml(),
        "status_callback": request("/stream_status", 204, "NO CONTENT"),
        "websocket": {"url": "ws://127.0.0.1:%d/ws/twilio-media" % PORT, "host_header": "voice.example.com",
                      "skipped": None, "library": "websocket-client 1.9.2", "status": 101, "reason": None,
                      "error": None, "accept_valid": True, "accept_expected": key_accept,
                      "subprotocol": "audio.twilio.com",
                      "headers": {"upgrade": "websocket", "connection": "Upgrade", "sec-websocket-accept": key_accept,
                                  "sec-websocket-protocol": "audio.twilio.com"},
                      "body_head": None, "round_trip": round_trip(), "held_seconds": 0.99},
        "media_tx": {"log": "/var/log/agentlocator/gunicorn.log", "count": 50, "with_stream_sid": 50,
                     "first": "2026-11-25 12:00:01,003 [4250] [INFO] agentlocator: MEDIA_TX streamSid=%s bytes=160" % SID,
                     "reason": None},
        "gcp": {"mode": None, "var": None, "env_source": "the environment of master 4242 (/proc/4242/environ)",
                "on_google_cloud": False, "uses_google": {"found": False, "files_scanned": 3, "truncated": False}},
        "seconds": 1.02,
    }


def judge(v, values=None):
    layer = Layer("voice", dict({"env_where": "/etc/agentlocator/agentlocator.env"}, **(values or {})))
    judge_voice.judge({"voice": v, "inputs": {"voice_checks": True}}, layer)
    for c in layer.causes:   # what the unit tests of the verdict demand of every remedy
        assert "?" not in c["remedy"] and "{" not in c["remedy"].replace('{"', "").replace("{{", ""), c["remedy"]
    return layer


def checks(layer):
    return dict((c["name"], c) for c in layer.checks)


def only(layer, cause_id):
    assert [c["id"] for c in layer.causes] == [cause_id], layer.causes
    return layer.causes[0]


# --- healthy --------------------------------------------------------------------------------------------
def test_healthy_voice_layer():
    layer = judge(voice_facts())
    assert layer.causes == []
    assert layer.result()["status"] == "pass"
    found = checks(layer)
    assert list(found) == ["public base URL", "TwiML webhook", "status callback", "WebSocket handshake",
                           "media round trip", "MEDIA_TX in the log", "Google credentials"]
    assert "(matches https://voice.example.com + /ws/twilio-media)" in found["TwiML webhook"]["detail"]
    assert "X-Twilio-Signature over https://voice.example.com/incoming_call" in found["TwiML webhook"]["detail"]
    assert "under -k sync the call held one of 1 worker(s) for 0.99 s (the only one" in found["media round trip"]["detail"]
    assert "50 MEDIA_TX line(s)" in found["MEDIA_TX in the log"]["detail"]


def test_eventlet_worker_gets_no_sync_note():
    assert "-k sync" not in checks(judge(voice_facts("eventlet")))["media round trip"]["detail"]
    detail = checks(judge(voice_facts("sync", 4)))["media round trip"]["detail"]
    assert "one of 4 worker(s)" in detail and "the only one" not in detail and "at most 4 call(s)" in detail


def test_in_the_whole_report(tmp_path):
    facts = test_verdict.healthy_facts(tmp_path)
    facts["voice"] = voice_facts()
    report = test_verdict.diagnose(facts)
    assert report["verdict"] == "healthy" and test_verdict.layer(report, "voice")["status"] == "pass"
    v = voice_facts()
    v["twiml"] = twiml("wss://voice.example.com//ws/twilio-media")
    facts["voice"] = v
    report = test_verdict.diagnose(facts)
    assert report["verdict"] == "degraded" and report["failed_layer"] == "voice"
    assert [c["id"] for c in report["causes"]] == ["twiml_double_slash"]


def test_voice_checks_off_and_not_probed():
    layer = Layer("voice", {})
    judge_voice.judge({"inputs": {"voice_checks": False}}, layer)
    assert layer.checks[0]["status"] == "skip" and "doctor_voice_checks is false" in layer.checks[0]["detail"]


def test_nothing_answers_http():
    v = voice_facts()
    v["http_skipped"] = "nothing answers HTTP on 127.0.0.1:8123 (/healthz: Connection refused): ..."
    layer = judge(v)
    assert layer.causes == []
    assert [c["status"] for c in layer.checks[1:5]] == ["skip"] * 4
    assert layer.checks[1]["detail"].startswith("nothing answers HTTP")
    # Only notes passed and nothing was called: the layer is skipped, not "ok" (a ladder must not say the calls work).
    v["public_base"] = v["public_base_url"] = v["public_base_url_source"] = None
    layer = judge(v)
    assert checks(layer)["public base URL"]["detail"].startswith("note:")
    assert layer.result()["status"] == "skip"


def test_unknown_public_base_url_is_a_note():
    v = voice_facts()
    v["public_base"] = v["public_base_url"] = v["public_base_url_source"] = None
    v["twiml"] = twiml("wss://127.0.0.1:8123/ws/twilio-media")
    layer = judge(v)
    assert layer.causes == []
    assert "note: none known" in checks(layer)["public base URL"]["detail"]
    assert "host not checked" in checks(layer)["TwiML webhook"]["detail"]


# --- TwiML ----------------------------------------------------------------------------------------------
def test_double_slash_names_the_trailing_slash():
    v = voice_facts()
    v["env_public_base_url"] = "https://voice.example.com/"
    v["twiml"] = twiml("wss://voice.example.com//ws/twilio-media")
    found = only(judge(v), "twiml_double_slash")
    assert found["twilio_error"] == 31923
    assert 'returned <Connect><Stream url="wss://voice.example.com//ws/twilio-media">' in found["evidence"][0]
    assert found["remedy"].startswith("Strip the trailing / of PUBLIC_BASE_URL (now https://voice.example.com/; set "
                                      "https://voice.example.com in /etc/agentlocator/agentlocator.env)")
    assert "must read wss://voice.example.com/ws/twilio-media (now wss://voice.example.com//ws/twilio-media)" in \
        found["remedy"]


@pytest.mark.parametrize("url, severity, code, words", [
    ("ws://voice.example.com/ws/twilio-media", "fail", 31922, "uses ws://, Twilio only connects to wss://"),
    ("wss://127.0.0.1:8123/ws/twilio-media", "fail", None, "not at the public base URL's host voice.example.com"),
    ("wss://voice.example.com/media", "fail", 31920, "the WebSocket is served at /ws/twilio-media"),
    ("wss://voice.example.com/ws/twilio-media?agent=7", "warn", None, "Twilio does not pass"),
    ("wss:///ws/twilio-media", "fail", 31923, "has no host"),
])
def test_stream_url_problems(url, severity, code, words):
    v = voice_facts()
    v["twiml"] = twiml(url)
    found = only(judge(v), "twiml_invalid")
    assert found["severity"] == severity and found["twilio_error"] == code
    assert any(words in e for e in found["evidence"]), found["evidence"]
    assert 'Stream url="wss://voice.example.com/ws/twilio-media"' in found["remedy"]


def test_query_string_only_warns():
    v = voice_facts()
    v["twiml"] = twiml(URL + "?agent=7")
    layer = judge(v)
    assert layer.result()["status"] == "warn"
    assert "<Parameter" in layer.causes[0]["remedy"]


def test_webhook_failing_is_11200():
    v = voice_facts()
    v["twiml"] = request("/incoming_call", 500, "INTERNAL SERVER ERROR", "<h1>Internal Server Error</h1>")
    found = only(judge(v), "twiml_invalid")
    assert found["twilio_error"] == 11200
    assert "-> 500 INTERNAL SERVER ERROR, 30 bytes" in found["evidence"][0]
    assert "curl -sS -i -X POST -d CallSid=CA" in found["remedy"]


def test_html_instead_of_twiml_is_12100():
    v = voice_facts()
    t = request("/incoming_call", 200, "OK", "<p>hello", "text/html")
    t["parsed"] = twilio.parse_twiml("<p>hello")
    v["twiml"] = t
    found = only(judge(v), "twiml_invalid")
    assert found["twilio_error"] == 12100 and "not XML" in found["evidence"][0]


def one_way(v, received=0, events=None):
    """The facts of a <Start> stream whose call went as Twilio's would: connected, start, media, stop."""
    v["twiml"] = twiml(verb="Start", after="<Say>Recording.</Say><Dial>+15555550100</Dial>")
    v["stream"] = {"verb": "Start", "tracks": ["inbound"], "path": "/ws/twilio-media", "from_twiml": True,
                   "other_host": None}
    rt = round_trip(media=0)
    rt.update(one_way=True, tracks=["inbound"], received=received, events=events or {}, media_sizes={},
              mark_echoed=False)
    v["websocket"]["round_trip"] = rt
    v["media_tx"] = None
    return v


def test_start_stream_followed_by_verbs_is_healthy():
    layer = judge(one_way(voice_facts()))
    assert layer.causes == [] and layer.result()["status"] == "pass"
    found = checks(layer)
    assert '<Start><Stream url="%s">, a one-way fork of the call audio, then <Say>, <Dial>' % URL in \
        found["TwiML webhook"]["detail"]
    assert found["TwiML webhook"]["status"] == "pass"
    rt = found["media round trip"]
    assert rt["status"] == "pass" and "a one-way 984 ms call (connected, start tracks inbound" in rt["detail"]
    assert "mark" not in rt["detail"] and "nothing came back, as a one-way stream expects" in rt["detail"]
    assert "the path of the TwiML's <Stream url>" in found["WebSocket handshake"]["detail"]
    assert found["MEDIA_TX in the log"]["status"] == "skip"


def test_start_stream_with_replies_is_a_note_not_a_fault():
    layer = judge(one_way(voice_facts(), received=51, events={"media": 50, "mark": 1}))
    assert layer.causes == []
    detail = checks(layer)["media round trip"]["detail"]
    assert "the app sent 51 frame(s) on a one-way stream: Twilio plays none of them" in detail and "31924" in detail


def test_start_stream_the_app_closes_early_warns():
    v = one_way(voice_facts())
    v["websocket"]["round_trip"]["closed_by_app"] = {"at_ms": 120, "code": 1000, "reason": "", "before_stop": True}
    found = checks(judge(v))["media round trip"]
    assert found["status"] == "warn" and "closed the stream 120 ms into the call" in found["detail"]


def test_start_stream_the_app_floods_warns():
    v = one_way(voice_facts(), received=1000, events={"media": 1000})
    v["websocket"]["round_trip"]["stopped_reading"] = "the app sent 1000 frames during the one-second call"
    found = checks(judge(v))["media round trip"]
    assert found["status"] == "warn" and "the doctor stopped reading: the app sent 1000 frames" in found["detail"]


def test_stream_on_another_name_of_this_host_is_probed_there():
    v = voice_facts()
    v["twiml"] = twiml("wss://127.0.0.1:8123/media/in")
    v["paths"]["ws"] = "/media/in"
    v["stream"] = {"verb": "Connect", "tracks": ["inbound"], "path": "/media/in", "from_twiml": True,
                   "other_host": "127.0.0.1:8123"}
    layer = judge(v)
    assert "the path of the TwiML's <Stream url>, on 127.0.0.1:8123: a name of this host" in \
        checks(layer)["WebSocket handshake"]["detail"]
    # Twilio cannot reach 127.0.0.1: the URL's host is still wrong.
    assert "build the URL from PUBLIC_BASE_URL" in only(layer, "twiml_invalid")["remedy"]


@pytest.mark.parametrize("kwargs, severity, code, words, fix", [
    # A <Start> with nothing after it: Twilio hangs up at once.
    (dict(verb="Start"), "fail", None, "hangs up at once", "put the call's next verb after </Start>"),
    (dict(verb="Start", url="ws://voice.example.com/ws/twilio-media", after="<Pause/>"), "fail", 31922,
     "uses ws://, Twilio only connects to wss://", "build the URL with wss://"),
    (dict(verb="Start", url="/ws/twilio-media", after="<Pause/>"), "fail", None, "'/ws/twilio-media' is relative",
     "write the absolute URL, wss://voice.example.com/ws/twilio-media"),
    (dict(verb="Start", attrs=' track="inbound"', after="<Pause/>"), "fail", 31941,
     "track must be one of inbound_track, outbound_track, both_tracks", "use inbound_track, outbound_track or both"),
    (dict(attrs=' track="both_tracks"'), "fail", 31941, "takes only inbound_track", "drop track"),
    # Verbs after <Connect> wait for the app to close the stream: a warning.
    (dict(after="<Say>Goodbye</Say>"), "warn", None, "<Say> after <Connect> never runs while the stream is up",
     "move those verbs before <Connect>"),
])
def test_stream_twiml_rules(kwargs, severity, code, words, fix):
    v = voice_facts()
    v["twiml"] = twiml(**kwargs)
    found = only(judge(v), "twiml_invalid")
    assert found["severity"] == severity and found["twilio_error"] == code, found
    assert any(words in e for e in found["evidence"]), found["evidence"]
    assert fix in found["remedy"]
    verb = kwargs.get("verb", "Connect")
    assert found["remedy"].startswith("Make POST /incoming_call return text/xml <Response> with <%s><Stream "
                                      'url="wss://voice.example.com/ws/twilio-media"/></%s>' % (verb, verb))
    assert checks(judge(v))["TwiML webhook"]["status"] == severity


def test_stream_on_another_public_host_is_valid_and_its_round_trip_is_not_run_here():
    """Twilio streams to any wss:// host: valid TwiML; the media WebSocket is served there, never tried from here."""
    url = "wss://media.example.net/streams/in"
    v = voice_facts()
    v["twiml"] = twiml(url)
    v["stream"] = {"verb": "Connect", "tracks": ["inbound"], "path": "/ws/twilio-media", "from_twiml": False,
                   "other_host": "media.example.net", "url": url, "elsewhere": True}
    v["websocket"] = {"skipped": "the media WebSocket is served elsewhere", "elsewhere": url, "url": url}
    layer = judge(v)
    assert layer.causes == []
    found = checks(layer)
    assert found["TwiML webhook"]["status"] == "pass"
    assert "valid: Twilio streams to any wss:// host" in found["TwiML webhook"]["detail"]
    assert "another host than the public base URL's voice.example.com" in found["TwiML webhook"]["detail"]
    assert found["WebSocket handshake"]["status"] == "warn"
    assert "the TwiML streams to %s" % url in found["WebSocket handshake"]["detail"]
    assert found["media round trip"]["status"] == "skip" and "not run against this app" in found["media round trip"]["detail"]
    assert layer.result()["status"] == "warn"


@pytest.mark.parametrize("host, reaches", [
    ("media.example.net", True), ("203.0.113.9", False), ("8.8.8.8", True), ("127.0.0.1", False),
    ("10.1.2.3", False), ("[::1]", False), ("localhost", False), ("media", False), ("box.local", False),
])
def test_which_stream_hosts_twilio_reaches(host, reaches):
    assert twilio.twilio_reaches(host) is reaches


def test_signature_refused():
    v = voice_facts()
    v["twiml"] = request("/incoming_call", 403, "FORBIDDEN")
    found = only(judge(v), "twiml_invalid")
    assert "ProxyFix" in found["remedy"] and "https://voice.example.com/incoming_call" in found["remedy"]
    unsigned = voice_facts()
    unsigned["twiml"] = dict(request("/incoming_call", 403, "FORBIDDEN"), signed_url=None)
    layer = judge(unsigned)
    assert layer.causes == [] and checks(layer)["TwiML webhook"]["status"] == "skip"
    assert "set doctor_twilio_auth_token" in checks(layer)["TwiML webhook"]["detail"]


# --- status callback ------------------------------------------------------------------------------------
def test_status_callback_200_with_a_body():
    v = voice_facts()
    v["status_callback"] = request("/stream_status", 200, "OK", "ok")
    found = only(judge(v), "status_callback_not_204")
    assert found["severity"] == "warn" and found["twilio_error"] is None
    assert "-> 200 OK, 2 bytes: 'ok'" in found["evidence"][0]
    assert "it answers 200 OK with 2 bytes now" in found["remedy"]


def test_status_callback_404_logs_11200():
    v = voice_facts()
    v["status_callback"] = request("/stream_status", 404, "NOT FOUND", "<h1>Not Found</h1>")
    assert only(judge(v), "status_callback_not_204")["twilio_error"] == 11200


# --- the WebSocket --------------------------------------------------------------------------------------
def test_plain_route_answers_400():
    v = voice_facts()
    v["websocket"].update(status=400, reason="BAD REQUEST", accept_valid=None, subprotocol=None, headers={},
                          body_head="<title>400 Bad Request</title>", round_trip=None)
    v["media_tx"] = None
    layer = judge(v)
    found = only(layer, "ws_handshake_failed")
    assert found["twilio_error"] == 31920
    assert "-> 400 BAD REQUEST, body '<title>400 Bad Request</title>', not 101 Switching Protocols" in found["evidence"][0]
    assert "a plain HTTP route answers an upgrade request with 400" in found["evidence"][1]
    assert "http://127.0.0.1:8123/ws/twilio-media" in found["remedy"]
    assert checks(layer)["media round trip"]["status"] == "skip"


def test_no_handshake_answer_is_31901():
    v = voice_facts()
    v["websocket"].update(status=None, error="no handshake answer within 3 s", round_trip=None)
    assert only(judge(v), "ws_handshake_failed")["twilio_error"] == 31901


def test_wrong_accept():
    v = voice_facts()
    v["websocket"].update(accept_valid=False, error="Invalid WebSocket Header", round_trip=None,
                          headers=dict(v["websocket"]["headers"], **{"sec-websocket-accept": "bogus="}))
    found = only(judge(v), "ws_handshake_failed")
    assert "Sec-WebSocket-Accept 'bogus=' is not 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='" in found["evidence"][0]


def test_subprotocol_not_echoed():
    v = voice_facts()
    v["websocket"].update(subprotocol=None)
    del v["websocket"]["headers"]["sec-websocket-protocol"]
    layer = judge(v)
    found = only(layer, "ws_subprotocol_missing")
    assert found["twilio_error"] == 31920
    assert "101 Switching Protocols with no Sec-WebSocket-Protocol header" in found["evidence"][0]
    assert 'app.config["SOCK_SERVER_OPTIONS"] = {"subprotocols": ["audio.twilio.com"]}' in found["remedy"]
    assert "would not get this far" in checks(layer)["media round trip"]["detail"]


def test_library_missing_warns_with_the_install_command():
    v = voice_facts()
    v["websocket"] = {"url": "ws://127.0.0.1:8123/ws/twilio-media", "skipped": "the websocket-client library is not "
                      "installed for /usr/bin/python3", "install": "/usr/bin/python3 -m pip install websocket-client"}
    v["media_tx"] = None
    layer = judge(v)
    assert layer.causes == [] and layer.result()["status"] == "warn"
    assert "install it with: /usr/bin/python3 -m pip install websocket-client" in checks(layer)["WebSocket handshake"]["detail"]


def test_pcm16_frames():
    problem = {"kind": "payload", "index": 1, "at_ms": 4,
               "detail": "media.payload of 640 bytes, not 160 (%s)" % twilio.SIZE_HINTS[640]}
    v = voice_facts()
    v["websocket"]["round_trip"] = round_trip(sizes={"640": 50}, problems=[problem])
    v["websocket"]["round_trip"]["problem_count"] = 50
    found = only(judge(v), "media_format_invalid")
    assert found["twilio_error"] == 31924
    assert found["evidence"][0].startswith("frame 1 at 4 ms: media.payload of 640 bytes, not 160")
    assert "50 of 51 frames" in found["evidence"][1] and "640 bytes x 50" in found["evidence"][1]
    assert "resample it to 8 kHz" in found["remedy"]


def test_a_flood_the_doctor_stopped_reading_comes_first():
    """The call's caps (frames, bytes, deadline) stop the reading: that, not the first odd frame, is the finding."""
    odd = {"kind": "event", "index": 1, "at_ms": 1, "detail": "event 'noise' (a server may send only media, mark "
                                                              "and clear)"}
    v = voice_facts()
    v["websocket"]["round_trip"] = dict(round_trip(media=0, problems=[odd]), stopped_reading=(
        "the app sent 1000 frames during the one-second call; the doctor reads no more"))
    found = only(judge(v), "media_format_invalid")
    assert found["evidence"][0].startswith("a frame: the doctor stopped reading: the app sent 1000 frames")
    assert "one media message per 20 ms of audio" in found["remedy"]


def test_a_call_that_ran_past_its_bound_is_slow_not_a_flood(tmp_path):
    """A loaded host: the call's deadline stopped the reading while every frame that came back was valid. Session 5's
    50-host audit under load 45 called such healthy hosts degraded at the voice layer (a 'flood', 31924)."""
    v = voice_facts()
    v["bounds"] = {"scale": 8.0, "why": "run queue 45.0 on 2 CPU(s), slowest /healthz 200 900 ms"}
    v["websocket"]["round_trip"] = dict(round_trip(media=31), stop_at_ms=None, out_of_time=True,
                                        stopped_reading="the call did not end within 32 s")
    layer = judge(v)
    assert layer.causes == []
    rt = checks(layer)["media round trip"]
    assert rt["status"] == "warn", rt
    assert "the call did not end within 32 s: the doctor stopped waiting (its bounds times 8.0 here: run queue 45.0" \
        in rt["detail"]
    assert "every frame that came back was valid" in rt["detail"]
    facts = test_verdict.healthy_facts(tmp_path)
    facts["voice"] = v
    report = test_verdict.diagnose(facts)
    assert report["verdict"] == "healthy" and report["failed_layer"] is None, report["causes"]


def test_a_call_that_ran_past_its_bound_with_a_bad_frame_names_the_frame():
    odd = {"kind": "binary", "index": 3, "at_ms": 40, "detail": "a binary frame (Twilio reads JSON text frames only)"}
    v = voice_facts()
    v["websocket"]["round_trip"] = dict(round_trip(problems=[odd]), out_of_time=True,
                                        stopped_reading="the call did not end within 4 s")
    found = only(judge(v), "media_format_invalid")
    assert found["evidence"][0].startswith("frame 3 at 40 ms: a binary frame"), found["evidence"]


@pytest.mark.parametrize("load, cpus, latencies, scale", [
    (0.3, 2, [2.1], 1.0),              # an idle host, a quick /healthz: the idle bounds
    (3.0, 2, [4.0], 1.5),              # busier than its CPUs
    (45.0, 2, [900.0], 8.0),           # session 5's 50-host run: capped
    (0.5, 2, [3.0, 1000.0], 4.0),      # an app starved of CPU (its cgroup's quota): its slowest 200
    (0.5, 2, [], 1.0),                 # no 200 (a 500 service): nothing says the app is slow
])
def test_bounds_scale(load, cpus, latencies, scale):
    healthz = {"samples": [{"status": 200, "latency_ms": ms} for ms in latencies] + [{"status": 500, "latency_ms": 9000}]}
    found = voice.bounds_scale(healthz, load, cpus)
    assert found["scale"] == scale
    assert found["why"].startswith("run queue %.1f on %d CPU(s)" % (load, cpus))


def test_bounds_scale_reads_this_hosts_run_queue():
    found = voice.bounds_scale(None)
    assert 1.0 <= found["scale"] <= voice.SCALE_MAX and "CPU(s), slowest /healthz 200 0 ms" in found["why"]


def test_app_closing_early_warns():
    v = voice_facts()
    v["websocket"]["round_trip"] = round_trip(media=0, closed_before_stop=True)
    layer = judge(v)
    assert layer.causes == [] and checks(layer)["media round trip"]["status"] == "warn"
    assert "closed the stream 120 ms into the call (close code 1000)" in checks(layer)["media round trip"]["detail"]


def test_silence_and_no_media_tx_are_notes():
    v = voice_facts()
    v["websocket"]["round_trip"] = round_trip(media=0)
    v["media_tx"] = dict(v["media_tx"], count=0, with_stream_sid=0, first=None)
    layer = judge(v)
    assert layer.causes == [] and layer.result()["status"] == "pass"
    assert "note: no audio came back" in checks(layer)["media round trip"]["detail"]
    assert "note: no MEDIA_TX line" in checks(layer)["MEDIA_TX in the log"]["detail"]


def test_judge_does_not_modify_the_facts():
    v = voice_facts()
    v["twiml"] = twiml("ws://voice.example.com//ws/x?y=1")
    before = copy.deepcopy(v)
    judge(v)
    assert v == before


# --- the probe's pieces, against real loopback servers ----------------------------------------------------
class Recorder(BaseHTTPRequestHandler):
    seen = []

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        Recorder.seen.append((self.path, dict(self.headers), self.rfile.read(length).decode()))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_post_form_signs_like_twilio(http_server):
    from urllib.parse import parse_qsl
    Recorder.seen = []
    fields = twilio.incoming_call_fields("CA" + "1" * 32, "AC" + "2" * 32)
    got = voice.post_form(http_server, "/incoming_call", fields, "voice.example.com", "https", "tok3n",
                          "https://voice.example.com")
    assert got["status"] == 204 and got["body_bytes"] == 0 and got["signed_url"] == "https://voice.example.com/incoming_call"
    path, headers, body = Recorder.seen[0]
    assert path == "/incoming_call" and headers["Host"] == "voice.example.com"
    assert headers["X-Forwarded-Proto"] == "https"
    assert dict(parse_qsl(body)) == fields
    assert headers["X-Twilio-Signature"] == twilio.signature("tok3n", "https://voice.example.com/incoming_call",
                                                             dict(parse_qsl(body)))
    assert "tok3n" not in json.dumps(got)
    unsigned = voice.post_form(http_server, "/x", fields, "h", None, None, "https://h")
    assert unsigned["signed_url"] is None and "X-Twilio-Signature" not in Recorder.seen[1][1]


def test_post_form_to_nothing():
    got = voice.post_form(closed_port(), "/incoming_call", {}, "h", None, None, "x")
    assert got["status"] is None and got["error"]


def serving(app):
    """A fixture body: the WSGI app under werkzeug's threaded server on a loopback port, shut down afterwards."""
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join(5)


@pytest.fixture
def demo_server():
    """The demo app (flask-sock) on a loopback port."""
    import importlib
    sys.path.insert(0, str(DEMO))
    try:
        main = importlib.import_module("AgentLocator.main")
    finally:
        sys.path.remove(str(DEMO))
    yield from serving(main.create_app())


def test_probe_websocket_round_trip_against_the_demo(demo_server):
    out = voice.probe_websocket(demo_server, "/ws/twilio-media", "voice.example.com", SID, "CA1", "AC1", {})
    assert out["status"] == 101 and out["accept_valid"] is True and out["subprotocol"] == "audio.twilio.com"
    rt = out["round_trip"]
    assert rt["sent_media"] == 50 and rt["events"]["media"] == 50 and rt["media_sizes"] == {"160": 50}
    assert rt["problems"] == [] and rt["mark_echoed"] is True
    # Paced, not dumped: 50 frames at 20 ms take about a second.
    assert 900 <= rt["stop_at_ms"] <= 2500
    assert rt["pace"] == 1 and rt["frame_interval_ms"] == 20
    assert out["held_seconds"] < 3


def test_a_faster_pace_sends_the_same_second_of_audio_in_less_time(demo_server):
    out = voice.probe_websocket(demo_server, "/ws/twilio-media", "voice.example.com", SID, "CA1", "AC1", {}, pace=4)
    rt = out["round_trip"]
    assert rt["pace"] == 4 and rt["frame_interval_ms"] == 5
    assert rt["sent_media"] == 50 and rt["events"]["media"] == 50 and rt["media_sizes"] == {"160": 50}
    assert rt["problems"] == [] and rt["mark_echoed"] is True and rt["after_stop"] == 0
    # 50 frames 5 ms apart: about a quarter of a second, still paced (not one burst).
    assert 240 <= rt["stop_at_ms"] <= 900, rt
    v = voice_facts()
    v["websocket"] = dict(out, url="ws://127.0.0.1:%d/ws/twilio-media" % PORT)
    detail = checks(judge(v))["media round trip"]["detail"]
    assert "50 x 160-byte media paced at 5 ms, 4x real time" in detail


@pytest.fixture
def late_talker():
    """An app that echoes the mark at once but starts talking - in 320-byte frames, PCM16 at 8 kHz, not mu-law -
    only half a second into the call (speech synthesis warming up)."""
    import base64
    from flask import Flask
    from flask_sock import Sock
    app = Flask("late_talker")
    app.config["SOCK_SERVER_OPTIONS"] = {"subprotocols": ["audio.twilio.com"]}
    sock = Sock(app)

    @sock.route("/ws/twilio-media")
    def media(ws):
        sid, started, talked = None, None, 0
        while True:
            raw = ws.receive(timeout=0.01)
            msg = json.loads(raw) if raw else {}
            if msg.get("event") == "start":
                sid, started = msg["start"]["streamSid"], time.monotonic()
            elif msg.get("event") == "mark":
                ws.send(json.dumps({"event": "mark", "streamSid": sid, "mark": msg["mark"]}))
            elif msg.get("event") == "stop":
                return
            if started and time.monotonic() - started > 0.5 and talked < 5:
                talked += 1
                ws.send(json.dumps({"event": "media", "streamSid": sid,
                                    "media": {"payload": base64.b64encode(b"\x00" * 320).decode()}}))

    yield from serving(app)


def test_a_faster_pace_still_hears_an_app_that_talks_late(late_talker):
    out = voice.probe_websocket(late_talker, "/ws/twilio-media", "voice.example.com", SID, "CA1", "AC1", {}, pace=4)
    rt = out["round_trip"]
    # Heard and checked although the 50 frames went out in a quarter of a second: what Twilio rejects (31924).
    assert rt["sent_media"] == 50 and set(rt["media_sizes"]) == {"320"}, rt
    assert rt["problems"] and {p["kind"] for p in rt["problems"]} == {"payload"}, rt


@pytest.fixture
def listener():
    """A listen-only app (a transcriber): its WebSocket at /media/in records what arrives and sends nothing."""
    from flask import Flask
    from flask_sock import Sock
    app = Flask("listener")
    app.config["SOCK_SERVER_OPTIONS"] = {"subprotocols": ["audio.twilio.com"]}
    sock = Sock(app)
    heard = []

    @sock.route("/media/in")
    def media(ws):
        while True:
            message = json.loads(ws.receive(timeout=5))
            heard.append(message)
            if message["event"] == "stop":
                return

    for port in serving(app):
        yield port, heard


def test_a_one_way_stream_gets_what_twilio_sends_it(listener):
    port, heard = listener
    stream = {"verb": "Start", "tracks": ["inbound", "outbound"]}
    out = voice.probe_websocket(port, "/media/in", "voice.example.com", SID, "CA1", "AC1", {"agent": "7"}, pace=4,
                                stream=stream)
    rt = out["round_trip"]
    assert out["status"] == 101 and rt["one_way"] is True and rt["tracks"] == ["inbound", "outbound"]
    assert rt["received"] == 0 and rt["problems"] == [] and rt["stop_at_ms"] is not None
    events = [m["event"] for m in heard]
    # connected, start, a frame per track every 20 ms, stop: no mark (Twilio sends marks only on two-way streams).
    assert events == ["connected", "start"] + ["media"] * 100 + ["stop"], events
    assert heard[1]["start"]["tracks"] == ["inbound", "outbound"] and heard[1]["start"]["customParameters"] == {"agent": "7"}
    assert [m["media"]["track"] for m in heard[2:6]] == ["inbound", "outbound", "inbound", "outbound"]
    assert [m["media"]["chunk"] for m in heard[2:6]] == ["1", "1", "2", "2"]
    assert [int(m["sequenceNumber"]) for m in heard[1:]] == list(range(1, 103))
    assert rt["sent_media"] == 100 and rt["planned_media"] == 100


@pytest.mark.parametrize("twiml_body, base, path, from_twiml, other_host", [
    ('<Response><Start><Stream url="wss://voice.example.com/media/in"/></Start><Pause/></Response>',
     "https://voice.example.com", "/media/in", True, None),
    ('<Response><Start><Stream url="wss://example.com/voice/media/in"/></Start><Pause/></Response>',
     "https://example.com/voice", "/media/in", True, None),
    ('<Response><Start><Stream url="/media/in"/></Start><Pause/></Response>', "https://voice.example.com",
     "/media/in", True, None),
    # Another public host: it serves the stream (elsewhere, nothing is probed for it here).
    ('<Response><Connect><Stream url="wss://media.example.net/in"/></Connect></Response>', "https://voice.example.com",
     "/ws/twilio-media", False, "media.example.net"),
    # Another host Twilio cannot reach: judged wrong, the configured path is probed.
    ('<Response><Connect><Stream url="wss://10.0.0.7/in"/></Connect></Response>', "https://voice.example.com",
     "/ws/twilio-media", False, "10.0.0.7"),
    # ... unless it is this host under another name (the request's Host fell through to the TwiML).
    ('<Response><Connect><Stream url="wss://127.0.0.1:8123/media/in"/></Connect></Response>',
     "https://voice.example.com", "/media/in", True, "127.0.0.1:8123"),
    ('<Response><Say>no stream</Say></Response>', "https://voice.example.com", "/ws/twilio-media", False, None),
])
def test_stream_target(twiml_body, base, path, from_twiml, other_host):
    p = {"ws_path": "/ws/twilio-media", "incoming_call_path": "/incoming_call"}
    target = voice.stream_target(twilio.parse_twiml(twiml_body), twilio.split_base_url(base), p, PORT)
    assert (target["path"], target["from_twiml"], target["other_host"]) == (path, from_twiml, other_host)
    assert target["elsewhere"] == (other_host == "media.example.net")


@pytest.mark.parametrize("pace", [0, -1, 0.5, 21, 1e6, True, "fast", float("inf")])
def test_voice_pace_must_be_a_number_from_1_to_20(tmp_path, pace):
    params = {"app": "AgentLocator.main:app", "chdir": str(tmp_path), "python": sys.executable, "voice_pace": pace}
    with pytest.raises(host_probe.InputError, match="doctor_voice_pace=.* is not a pace: set it to a number from 1 "):
        host_probe.validate(params)
    assert host_probe.validate(dict(params, voice_pace="2.5"))["voice_pace"] == 2.5
    assert host_probe.validate(dict(params, voice_pace=None))["voice_pace"] == 1.0


def test_probe_websocket_on_a_plain_route(demo_server):
    out = voice.probe_websocket(demo_server, "/healthz", "h", SID, "CA1", "AC1", {})
    assert out["status"] == 400 and out["round_trip"] is None


@pytest.fixture
def not_utf8_talker():
    """A raw WebSocket server: a proper 101 with Twilio's subprotocol, then one text frame whose bytes are not
    UTF-8 (what a Twilio media stream would drop the call for); it reads until the client goes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve():
        conn = listener.accept()[0]
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            key = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:")][0].decode()
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: audio.twilio.com\r\n\r\n"
                         % twilio.ws_accept(key).encode())
            conn.sendall(b"\x81\x04\xff\xfe{}")
            while conn.recv(65536):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    try:
        listener.shutdown(socket.SHUT_RDWR)   # wakes an accept() still waiting (close() alone does not)
    except OSError:
        pass
    listener.close()
    thread.join(5)


def test_a_text_frame_that_is_not_utf8_ends_the_call_with_a_receive_error(not_utf8_talker):
    out = voice.probe_websocket(not_utf8_talker, "/ws/twilio-media", "voice.example.com", SID, "CA1", "AC1", {},
                                pace=4)
    rt = out["round_trip"]
    assert out["status"] == 101 and rt["receive_error"] == "a text frame that is not UTF-8: b'\\xff\\xfe{}'", rt
    assert rt["closed_by_app"]["reason"] == "the client gave up on a bad frame" and rt["received"] == 0, rt


def test_probe_websocket_refused():
    out = voice.probe_websocket(closed_port(), "/ws/twilio-media", "h", SID, "CA1", "AC1", {})
    assert out["status"] is None and out["error"]


# --- MEDIA_TX and the skip decision -------------------------------------------------------------------
def test_media_tx_counts_only_the_lines_of_the_call(tmp_path):
    log = tmp_path / "gunicorn.log"
    log.write_text("old MEDIA_TX streamSid=MZold bytes=160\n")
    mark = voice._log_size(str(log))
    with open(str(log), "a") as f:
        f.write(("x [INFO] agentlocator: MEDIA_TX streamSid=%s bytes=160\n" % SID) * 3)
        f.write("x [INFO] something else\n")
    got = voice.media_tx_lines(str(log), mark, SID, 3)
    assert got["count"] == 3 and got["with_stream_sid"] == 3 and SID in got["first"]
    assert voice.media_tx_lines(None, None, SID, 3)["reason"] == "no log file to read"


def test_media_tx_waits_on_the_log_only_while_it_may_still_come(tmp_path):
    log = tmp_path / "gunicorn.log"
    log.write_text("[2026-11-25 12:00:00 +0000] [7] [INFO] Listening at: http://0.0.0.0:8000 (7)\n")
    started = time.monotonic()
    got = voice.media_tx_lines(str(log), voice._log_size(str(log)), SID, 0)
    assert got["count"] == 0 and got["reason"] is None
    assert time.monotonic() - started < 0.1     # no frame came back: no line to await
    # Frames came back but the log has not grown: it may be relayed (supervisord, journald) - the short
    # "stopped growing" window, not LOG_WAIT.
    started = time.monotonic()
    got = voice.media_tx_lines(str(log), voice._log_size(str(log)), SID, 50)
    assert got["count"] == 0 and 0.1 <= time.monotonic() - started < voice.LOG_WAIT


@pytest.mark.parametrize("samples, skipped", [
    ([{"status": None, "error": "Connection refused"}] * 3, True),
    ([{"status": 500, "error": None}], False),
    ([{"status": 200, "error": None}, {"status": None, "error": "Connection refused"}], False),
    ([], False),
])
def test_http_skip_reason(samples, skipped):
    reason = voice._http_skip_reason({"healthz": {"samples": samples}, "port": PORT})
    assert bool(reason) == skipped
    if skipped:
        assert "nothing answers HTTP on 127.0.0.1:8123 (/healthz: Connection refused)" in reason
