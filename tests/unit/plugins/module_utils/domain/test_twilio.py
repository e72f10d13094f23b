"""plugins/module_utils/domain/twilio.py: signatures, TwiML, stream URLs, Media Streams frames, mu-law.

Known vectors come from their specifications (Twilio's webhook security page, RFC 6455, G.711) or are
computed here independently with hmac/hashlib from a string written out by hand.
"""

import base64
import hashlib
import hmac
import json
import math
import struct
import warnings

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import twilio


# --- X-Twilio-Signature ---------------------------------------------------------------------------------
def test_signature_matches_twilios_documented_example():
    # https://www.twilio.com/docs/usage/security#validating-requests (auth token 12345)
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030",
              "To": "+18005551212"}
    assert twilio.signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params) == \
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_signature_is_hmac_sha1_of_url_and_sorted_params():
    url = "https://voice.example.com/incoming_call"
    params = {"To": "+15555550199", "CallSid": "CA42", "From": "+15555550100", "AccountSid": "AC7"}
    # Written out by hand: the URL, then name+value of each parameter in name order, no separators.
    signed = "https://voice.example.com/incoming_callAccountSidAC7CallSidCA42From+15555550100To+15555550199"
    expected = base64.b64encode(hmac.new(b"s3cr3t-token", signed.encode(), hashlib.sha1).digest()).decode()
    assert twilio.signature("s3cr3t-token", url, params) == expected
    # The order of the form does not matter; the URL and every value do.
    assert twilio.signature("s3cr3t-token", url, list(reversed(list(params.items())))) == expected
    assert twilio.signature("s3cr3t-token", url + "/", params) != expected
    assert twilio.signature("s3cr3t-token", url, dict(params, To="+1")) != expected
    assert twilio.signature("other-token", url, params) != expected


def test_webhook_fields_look_like_twilios():
    fields = twilio.incoming_call_fields("CA" + "1" * 32, "AC" + "2" * 32)
    for name in ("CallSid", "AccountSid", "From", "To", "CallStatus", "Direction", "ApiVersion"):
        assert fields[name]
    assert fields["Direction"] == "inbound" and fields["ApiVersion"] == "2010-04-01"
    status = twilio.stream_status_fields("CA1", "AC1", "MZ1")
    assert status["StreamEvent"] == "stream-started" and status["StreamSid"] == "MZ1"
    assert twilio.sid("CA", "x").startswith("CA") and len(twilio.sid("CA", "x")) == 34


def test_websocket_accept_rfc6455_example():
    # RFC 6455 section 1.3
    assert twilio.ws_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# --- base URL and TwiML ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value, clean, expected", [
    ("https://voice.example.com", "https://voice.example.com", "wss://voice.example.com/ws/twilio-media"),
    ("https://voice.example.com/", "https://voice.example.com", "wss://voice.example.com/ws/twilio-media"),
    ("voice.example.com", "https://voice.example.com", "wss://voice.example.com/ws/twilio-media"),
    ("https://example.com/voice//", "https://example.com/voice", "wss://example.com/voice/ws/twilio-media"),
    ("http://10.0.0.5:8000", "http://10.0.0.5:8000", "ws://10.0.0.5:8000/ws/twilio-media"),
])
def test_split_base_url(value, clean, expected):
    base = twilio.split_base_url(value)
    assert base["clean"] == clean
    assert twilio.expected_stream_url(base, "/ws/twilio-media") == expected
    assert base["trailing_slash"] == value.endswith("/")


def test_no_base_url():
    assert twilio.split_base_url("") is None and twilio.split_base_url(None) is None


def test_parse_twiml_connect_stream_with_parameters():
    body = ('<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://h/ws/twilio-media">'
            '<Parameter name="agent" value="42"/></Stream></Connect></Response>')
    parsed = twilio.parse_twiml(body)
    assert parsed["ok"] and parsed["verb"] == "Connect"
    assert parsed["streams"][0]["url"] == "wss://h/ws/twilio-media"
    assert parsed["streams"][0]["parameters"] == ["agent"]
    assert parsed["streams"][0]["parameter_values"] == {"agent": "42"}


@pytest.mark.parametrize("body, error", [
    ("<html><body>Hello</body></html>", "the root element is <html>, not <Response>"),
    ('{"twiml": "no"}', "not XML"),
    ("<Response><Say>hi</Say></Response>", 'no <Start><Stream url="..."/></Start> or <Connect><Stream url="..."/>'
     '</Connect> in <Response> (verbs: <Say>)'),
    # <Stream> only counts where Twilio reads it: directly inside <Start> or <Connect>.
    ('<Response><Dial><Stream url="wss://h/ws"/></Dial></Response>', "(verbs: <Dial>)"),
    ("<Response/>", "(verbs: none)"),
])
def test_parse_twiml_errors(body, error):
    parsed = twilio.parse_twiml(body)
    assert not parsed["ok"]
    assert error in parsed["error"]


BASE = twilio.split_base_url("https://voice.example.com")


def test_parse_twiml_start_stream_is_one_way():
    parsed = twilio.parse_twiml('<Response><Start><Stream url="wss://h/ws" track="both_tracks" name="rec"/></Start>'
                                '<Say>hello</Say><Pause length="60"/></Response>')
    assert parsed["ok"] and parsed["verb"] == "Start"
    stream = parsed["streams"][0]
    assert stream["track"] == "both_tracks" and stream["name"] == "rec"
    assert stream["verbs_after"] == ["Say", "Pause"]
    assert twilio.check_stream_twiml(stream) == []
    assert twilio.stream_tracks(stream) == ["inbound", "outbound"]


def stream_of(twiml):
    return twilio.parse_twiml(twiml)["streams"][0]


@pytest.mark.parametrize("twiml, kinds, severities, words", [
    # Twilio's own examples: a fork then the call goes on; a two-way stream alone.
    ('<Response><Start><Stream url="wss://h/a"/></Start><Say>hi</Say></Response>', [], [], ""),
    ('<Response><Connect><Stream url="wss://h/a"/></Connect></Response>', [], [], ""),
    ('<Response><Start><Stream url="wss://h/a" track="outbound_track"/></Start><Dial>+15555550100</Dial></Response>',
     [], [], ""),
    ('<Response><Connect><Stream url="wss://h/a" track="inbound_track"/></Connect></Response>', [], [], ""),
    # Nothing after <Start>: Twilio hangs up as soon as the stream starts.
    ('<Response><Start><Stream url="wss://h/a"/></Start></Response>', ["start_last"], ["fail"], "hangs up"),
    # Verbs after <Connect> wait until the app closes the stream.
    ('<Response><Connect><Stream url="wss://h/a"/></Connect><Say>bye</Say><Hangup/></Response>', ["after_connect"],
     ["warn"], "<Say>, <Hangup> after <Connect> never run while"),
    ('<Response><Connect><Stream url="wss://h/a"/></Connect><Say>bye</Say></Response>', ["after_connect"], ["warn"],
     "<Say> after <Connect> never runs"),
    # track: 31941 when the verb does not take it.
    ('<Response><Connect><Stream url="wss://h/a" track="both_tracks"/></Connect></Response>', ["track"], ["fail"],
     "takes only inbound_track"),
    ('<Response><Start><Stream url="wss://h/a" track="inbound"/></Start><Say>x</Say></Response>', ["track"], ["fail"],
     "one of inbound_track, outbound_track, both_tracks"),
    ('<Response><Start><Stream url="wss://h/a"><Parameter name="agent"/><Parameter name="a" value="1"/></Stream>'
     '</Start><Pause/></Response>', ["parameter"], ["warn"], "1 <Parameter> element(s) without both"),
])
def test_check_stream_twiml(twiml, kinds, severities, words):
    problems = twilio.check_stream_twiml(stream_of(twiml))
    assert [p["kind"] for p in problems] == kinds
    assert [p["severity"] for p in problems] == severities
    assert all(p["twilio_error"] == (31941 if p["kind"] == "track" else None) for p in problems)
    assert words in " ".join(p["detail"] for p in problems)


@pytest.mark.parametrize("url, base, expected", [
    ("wss://voice.example.com/media/in", BASE, {"path": "/media/in", "host": "voice.example.com", "same_app": True}),
    ("wss://voice.example.com:443/media/in", BASE, {"path": "/media/in", "host": "voice.example.com:443",
                                                    "same_app": True}),
    # The public prefix is the proxy's: the app serves what follows it. // collapses to the route it meant.
    ("wss://example.com/voice/media/in", twilio.split_base_url("https://example.com/voice/"),
     {"path": "/media/in", "host": "example.com", "same_app": True}),
    ("wss://example.com/voiceover/in", twilio.split_base_url("https://example.com/voice"),
     {"path": "/voiceover/in", "host": "example.com", "same_app": True}),
    ("wss://voice.example.com//ws/twilio-media", BASE, {"path": "/ws/twilio-media", "host": "voice.example.com",
                                                        "same_app": True}),
    ("wss://media.example.net/in", BASE, {"path": "/in", "host": "media.example.net", "same_app": False}),
    ("wss://anywhere.example.net/in", None, {"path": "/in", "host": "anywhere.example.net", "same_app": True}),
    # Relative: the webhook's own host.
    ("/media/in", BASE, {"path": "/media/in", "host": None, "same_app": True}),
    ("media/in", BASE, {"path": "/media/in", "host": None, "same_app": True}),
    (None, BASE, None),
    ("wss://h/a b", BASE, None),
])
def test_local_stream_path(url, base, expected):
    found = twilio.local_stream_path(url, base, "/incoming_call")
    if found is not None:   # whether Twilio reaches the host: a public name or address (twilio_reaches)
        assert found.pop("reachable") == (found["host"] is None or twilio.twilio_reaches(found["host"].split(":")[0]))
    assert found == expected


def test_stream_tracks():
    assert twilio.stream_tracks({"verb": "Connect", "track": None}) == ["inbound"]
    assert twilio.stream_tracks({"verb": "Start", "track": None}) == ["inbound"]
    assert twilio.stream_tracks({"verb": "Start", "track": "outbound_track"}) == ["outbound"]
    assert twilio.stream_tracks({"verb": "Start", "track": "bogus"}) == ["inbound"]
    assert twilio.stream_tracks(None) == ["inbound"]


@pytest.mark.parametrize("url, base, kinds", [
    ("wss://voice.example.com/ws/twilio-media", BASE, []),
    ("wss://voice.example.com:443/ws/twilio-media", BASE, []),
    ("wss://VOICE.example.com/ws/twilio-media", BASE, []),
    ("wss://voice.example.com//ws/twilio-media", BASE, ["double_slash"]),
    ("ws://voice.example.com/ws/twilio-media", BASE, ["scheme"]),
    ("https://voice.example.com/ws/twilio-media", BASE, ["scheme"]),
    ("wss://127.0.0.1:8000/ws/twilio-media", BASE, ["host"]),
    # Another public host: valid TwiML (Twilio streams to any wss:// host), its path is that host's business.
    ("wss://media.example.net/streams/in", BASE, ["elsewhere"]),
    ("wss://10.0.0.7/ws/twilio-media", BASE, ["host"]),
    ("wss://voice.example.com/ws/media", BASE, ["path"]),
    ("wss://voice.example.com/ws/twilio-media?agent=42", BASE, ["query"]),
    ("wss://voice.example.com:8o/ws/twilio-media", BASE, ["malformed", "host"]),
    ("/ws/twilio-media", BASE, ["relative"]),
    ("ws/twilio-media", BASE, ["relative"]),
    ("wss://voice.example.com/ws /twilio-media", BASE, ["malformed"]),
    ("wss:///ws/twilio-media", BASE, ["malformed", "host"]),
    (None, BASE, ["missing"]),
    ("wss://anything.example.net/ws/twilio-media", None, []),
    ("wss://anything.example.net//ws/twilio-media", None, ["double_slash"]),
    ("wss://example.com/voice/ws/twilio-media", twilio.split_base_url("https://example.com/voice/"), []),
    ("wss://example.com/ws/twilio-media", twilio.split_base_url("https://example.com/voice"), ["path"]),
])
def test_check_stream_url(url, base, kinds):
    assert [p["kind"] for p in twilio.check_stream_url(url, base, "/ws/twilio-media")] == kinds


# --- Media Streams messages -----------------------------------------------------------------------------
def test_messages_follow_the_media_streams_format():
    start = twilio.start_message("MZ1", "CA1", "AC1", {"agent": "42"})
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert start["streamSid"] == start["start"]["streamSid"] == "MZ1"
    assert start["start"]["customParameters"] == {"agent": "42"}
    media = twilio.media_message("MZ1", 3, 2, b"\xff" * 160)
    assert media["media"]["timestamp"] == "20" and media["media"]["chunk"] == "2"
    assert base64.b64decode(media["media"]["payload"]) == b"\xff" * 160
    assert twilio.connected_message() == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert twilio.stop_message("MZ1", 9, "CA1", "AC1")["stop"]["callSid"] == "CA1"
    assert twilio.mark_message("MZ1", 8, "m")["mark"] == {"name": "m"}
    # A one-way stream of both tracks announces both and sends each track's frames.
    both = twilio.start_message("MZ1", "CA1", "AC1", {}, ["inbound", "outbound"])
    assert both["start"]["tracks"] == ["inbound", "outbound"]
    assert twilio.media_message("MZ1", 4, 2, b"\xff" * 160, "outbound")["media"]["track"] == "outbound"


@pytest.mark.parametrize("sample, byte", [(0, 0xFF), (-1, 0x7E), (32767, 0x80), (-32768, 0x00), (1000, 0xCE)])
def test_mulaw_g711_values(sample, byte):
    assert twilio.ulaw_encode_sample(sample) == byte


def test_mulaw_matches_audioop_for_every_sample():
    """The standard library's G.711 encoder (Python < 3.13) as the independent reference."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    pcm = struct.pack("<65536h", *range(-32768, 32768))
    assert bytes(twilio.ulaw_encode_sample(s) for s in range(-32768, 32768)) == audioop.lin2ulaw(pcm, 2)


def test_tone_frames_are_20ms_of_mulaw():
    frames = twilio.tone_frames(50)
    assert len(frames) == 50 and set(len(f) for f in frames) == {160}
    assert len(set(frames)) > 1   # a tone, not silence
    # The same bytes as encoding every sample of the second (the period is repeated, not approximated).
    peak = 0.2 * 32767
    every = bytes(twilio.ulaw_encode_sample(int(round(peak * math.sin(2 * math.pi * 440 * n / 8000))))
                  for n in range(50 * 160))
    assert b"".join(frames) == every


def media(payload, sid="MZ1", event="media"):
    return json.dumps({"event": event, "streamSid": sid, "media": {"payload": base64.b64encode(payload).decode()}})


@pytest.mark.parametrize("is_text, data, problem", [
    (True, media(b"\xff" * 160), None),
    (True, json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": "x"}}), None),
    (True, json.dumps({"event": "clear", "streamSid": "MZ1"}), None),
    (True, media(b"\x00\x01" * 320), "640 bytes, not 160 (640 bytes = 20 ms of 16-bit PCM at 16 kHz"),
    (True, media(b"\x00" * 320), "320 bytes, not 160 (320 bytes = 20 ms of 16-bit PCM at 8 kHz"),
    (True, media(b"\xff" * 480), "480 bytes, not 160"),
    (True, media(b"\xff" * 80), "80 bytes, not 160 (80 bytes = 10.0 ms of 8 kHz mu-law)"),
    (True, media(b"RIFF" + b"\x00" * 156), "starts with a WAV file header"),
    (True, media(b"\xff" * 160, sid="MZ2"), "with streamSid 'MZ2', the call's is 'MZ1'"),
    (True, media(b"\xff" * 160, event="start"), "event 'start' (a server may send only media, mark and clear)"),
    (True, json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": "***"}}), "not base64"),
    (True, json.dumps({"event": "media", "streamSid": "MZ1"}), "media without media.payload"),
    (True, "hello", "not JSON"),
    (True, "[1, 2]", "a JSON list, not an object"),
    (False, b"\xff" * 160, "a binary frame of 160 bytes"),
])
def test_check_server_message(is_text, data, problem):
    found = twilio.check_server_message(is_text, data, "MZ1")[1]
    if problem is None:
        assert found is None
    else:
        assert problem in found["detail"]


def test_a_multiple_of_160_is_not_enough():
    """640 = 4 x 160: the check is the exact size of a 20 ms frame."""
    event, problem, size = twilio.check_server_message(True, media(b"\xff" * 640), "MZ1")
    assert event == "media" and size == 640 and problem["kind"] == "payload"


# --- secrets the URL or the TwiML may carry -------------------------------------------------------------
def test_basic_auth_in_the_base_url_never_leaves_the_host():
    base = twilio.split_base_url("https://twilio:hunter2@voice.example.com/")
    assert base["netloc"] == "voice.example.com" and base["clean"] == "https://voice.example.com"
    assert base["userinfo"] is True and "hunter2" not in json.dumps(base)
    assert twilio.mask_userinfo("https://twilio:hunter2@voice.example.com/x") == \
        "https://twilio:<redacted>@voice.example.com/x"
    assert twilio.mask_userinfo("https://voice.example.com:8443/x") == "https://voice.example.com:8443/x"
    assert twilio.mask_userinfo(None) is None


def test_twiml_parameter_values_are_masked():
    body = ('<Response><Connect><Stream url="wss://h/ws"><Parameter name="apiKey" value="sk_live_1"/>'
            "<Parameter value='x2' name=\"agent\"/></Stream></Connect></Response>")
    masked = twilio.mask_twiml_parameters(body)
    assert "sk_live_1" not in masked and "x2" not in masked
    assert 'name="apiKey" value="***"' in masked and twilio.parse_twiml(masked)["ok"]
