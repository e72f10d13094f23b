# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Twilio sends and expects, as pure functions: request signatures, webhook form fields,
TwiML parsing and stream-URL rules, Media Streams messages, mu-law audio and frame checks.

No I/O here: probes/voice.py talks to the app, judge_voice.py decides what the results mean.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import math
import re

try:
    from urllib.parse import urljoin, urlsplit
except ImportError:  # pragma: no cover - Python 2 is not a target
    urljoin = urlsplit = None

SUBPROTOCOL = 'audio.twilio.com'
WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'   # RFC 6455, section 1.3
SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000        # 160: 20 ms of 8 kHz mono mu-law, one byte a sample
SERVER_EVENTS = ('media', 'mark', 'clear')          # all a bidirectional stream's server may send
STREAM_VERBS = ('Start', 'Connect')                 # <Start><Stream>: one-way fork; <Connect><Stream>: two-way
TRACKS = {'Start': ('inbound_track', 'outbound_track', 'both_tracks'), 'Connect': ('inbound_track',)}
# What other frame sizes mean, for the evidence (20 ms at a rate and sample width).
SIZE_HINTS = {
    320: '320 bytes = 20 ms of 16-bit PCM at 8 kHz (not mu-law)',
    640: '640 bytes = 20 ms of 16-bit PCM at 16 kHz (= 4 x 160: not mu-law, wrong rate)',
    960: '960 bytes = 20 ms of 16-bit PCM at 24 kHz',
    1920: '1920 bytes = 20 ms of 16-bit PCM at 48 kHz',
    480: '480 bytes = 20 ms of 8-bit audio at 24 kHz, or 60 ms of 8 kHz mu-law',
    8000: '8000 bytes = one second of 8 kHz mu-law in one message, not 20 ms frames',
}


# --- request signature (https://www.twilio.com/docs/usage/security#validating-requests) -----------
def signature(auth_token, url, params):
    """X-Twilio-Signature for a POST to `url` with form `params` (dict or list of pairs): the full URL,
    then every parameter name followed by its value, sorted by name (and value), HMAC-SHA1 keyed with
    the auth token, base64."""
    pairs = sorted(params.items() if isinstance(params, dict) else params)
    data = url + ''.join('%s%s' % (k, v) for k, v in pairs)
    digest = hmac.new(auth_token.encode('utf-8'), data.encode('utf-8'), hashlib.sha1).digest()
    return base64.b64encode(digest).decode('ascii')


def ws_accept(key):
    """The Sec-WebSocket-Accept a server must answer for Sec-WebSocket-Key `key` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode('ascii')).digest()).decode('ascii')


# --- webhook requests -------------------------------------------------------------------------------
def sid(prefix, seed):
    """A Twilio-shaped SID (two letters + 32 hex digits) derived from `seed`."""
    return prefix + hashlib.sha1(seed.encode('utf-8')).hexdigest()[:32]


def incoming_call_fields(call_sid, account_sid, caller='+15555550100', called='+15555550199'):
    """The form Twilio POSTs to a voice webhook when a call comes in."""
    return {
        'AccountSid': account_sid, 'ApiVersion': '2010-04-01', 'CallSid': call_sid, 'CallStatus': 'ringing',
        'Called': called, 'CalledCountry': 'US', 'Caller': caller, 'CallerCountry': 'US',
        'Direction': 'inbound', 'From': caller, 'FromCountry': 'US', 'To': called, 'ToCountry': 'US',
    }


def stream_status_fields(call_sid, account_sid, stream_sid, event='stream-started', timestamp=None):
    """The form Twilio POSTs to a <Stream statusCallback>."""
    return {
        'AccountSid': account_sid, 'CallSid': call_sid, 'StreamSid': stream_sid, 'StreamName': stream_sid,
        'StreamEvent': event, 'Timestamp': timestamp or '2026-11-25T12:00:00.000Z',
    }


# --- base URLs and TwiML ----------------------------------------------------------------------------
def split_base_url(value):
    """A public base URL as the app would read it -> dict(scheme, netloc, host, port, prefix, clean, ...), or
    None when there is none. A value without a scheme is taken as https, as Twilio needs TLS. Lenient: the
    voice layer judges what it finds; the external probe (plugin_utils/external_probe.split_base_url) refuses
    what it cannot probe, on top of this one parser."""
    value = (value or '').strip()
    if not value:
        return None
    if '://' not in value:
        value = 'https://' + value
    parts = urlsplit(value)
    prefix = '/'.join(seg for seg in parts.path.split('/') if seg)
    prefix = '/' + prefix if prefix else ''
    netloc = parts.netloc.rsplit('@', 1)[-1]    # user:password@ (webhook basic auth) never leaves the host
    return {
        'scheme': parts.scheme.lower(), 'netloc': netloc.lower(), 'host': (parts.hostname or '').lower(),
        'port': _port_of(parts), 'prefix': prefix, 'trailing_slash': parts.path.endswith('/'),
        'clean': '%s://%s%s' % (parts.scheme.lower(), netloc, prefix), 'userinfo': '@' in parts.netloc,
        'query_or_fragment': bool(parts.query or parts.fragment),
    }


def mask_userinfo(url):
    """https://user:secret@host/x -> https://user:<redacted>@host/x (anything else unchanged)."""
    return re.sub(r'^([A-Za-z][\w+.-]*://[^/@:]*):[^/@]*@', r'\1:<redacted>@', url or '') if url else url


def mask_twiml_parameters(text):
    """TwiML with the values of <Parameter> elements blanked: an app may pass secrets to its own stream."""
    return re.sub(r'(<Parameter\b[^>]*?\bvalue\s*=\s*)("[^"]*"|\'[^\']*\')', r'\1"***"', text or '')


def _port_of(parts):
    """The URL's port, None when it has none, -1 when it is not a number."""
    try:
        return parts.port
    except ValueError:
        return -1


def expected_stream_url(base, ws_path):
    """wss://HOST[/prefix]/ws/path for a split base URL (http->ws, https->wss, as the domain facts say)."""
    scheme = {'http': 'ws', 'https': 'wss', 'ws': 'ws', 'wss': 'wss'}.get(base['scheme'], 'wss')
    return '%s://%s%s%s' % (scheme, base['netloc'], base['prefix'], ws_path)


def parse_twiml(body):
    """TwiML text -> dict(ok, error, verb, verbs, streams: [{verb, url, track, name, parameters: [names],
    parameter_values, bad_parameters, has_status_callback, verbs_after}]).
    `verb` is the parent of the first <Stream>: Connect (bidirectional) or Start (one-way fork); `verbs_after`
    are the verbs of <Response> after that parent, in order."""
    import xml.etree.ElementTree as ET   # here: only a host whose app answered the webhook parses TwiML
    result = {'ok': False, 'error': None, 'root': None, 'verb': None, 'streams': [], 'verbs': []}
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        result['error'] = 'not XML: %s' % e
        return result
    result['root'] = root.tag
    result['verbs'] = [child.tag for child in root]
    if root.tag != 'Response':
        result['error'] = 'the root element is <%s>, not <Response>' % root.tag
        return result
    children = list(root)
    for index, parent in enumerate(children):
        if parent.tag not in STREAM_VERBS:
            continue
        for stream in parent.findall('Stream'):
            result['streams'].append(_stream_of(parent.tag, stream, [c.tag for c in children[index + 1:]]))
    if not result['streams']:
        result['error'] = 'no <Start><Stream url="..."/></Start> or <Connect><Stream url="..."/></Connect> in ' \
            '<Response> (verbs: %s)' % (', '.join('<%s>' % v for v in result['verbs']) or 'none')
        return result
    result['verb'] = result['streams'][0]['verb']
    result['ok'] = True
    return result


def _stream_of(verb, stream, verbs_after):
    parameters = stream.findall('Parameter')
    return {
        'verb': verb, 'url': stream.get('url'), 'track': stream.get('track'), 'name': stream.get('name'),
        'parameters': [p.get('name') for p in parameters],
        'parameter_values': dict((p.get('name'), p.get('value')) for p in parameters),
        'bad_parameters': len([p for p in parameters if not p.get('name') or p.get('value') is None]),
        'has_status_callback': stream.get('statusCallback') is not None,
        'verbs_after': verbs_after,
    }


def check_stream_twiml(stream):
    """Problems of a parsed <Stream> by Twilio's <Stream> rules, apart from its url -> list of dicts(kind,
    detail, severity, twilio_error). kinds: track (31941), start_last (the call hangs up: nothing follows
    <Start>), after_connect (verbs Twilio runs only once the app closes the stream), parameter."""
    problems = []
    verb, track = stream['verb'], stream.get('track')
    allowed = TRACKS[verb]
    if track is not None and track not in allowed:
        problems.append({'kind': 'track', 'severity': 'fail', 'twilio_error': 31941, 'detail': (
            '<%s><Stream track="%s">: %s' % (verb, track, 'a <Connect> (two-way) stream takes only inbound_track'
                                             if verb == 'Connect' else 'track must be one of ' + ', '.join(allowed)))})
    after = stream.get('verbs_after') or []
    if verb == 'Start' and not after:
        problems.append({'kind': 'start_last', 'severity': 'fail', 'twilio_error': None, 'detail': (
            'nothing follows <Start>: Twilio starts the stream, goes on to the next verb and, with none left, '
            'hangs up at once')})
    if verb == 'Connect' and after:
        problems.append({'kind': 'after_connect', 'severity': 'warn', 'twilio_error': None, 'detail': (
            '%s after <Connect> never run%s while the stream is up: Twilio goes on only when the app closes the '
            'WebSocket' % (', '.join('<%s>' % v for v in after), '' if len(after) > 1 else 's'))})
    if stream.get('bad_parameters'):
        problems.append({'kind': 'parameter', 'severity': 'warn', 'twilio_error': None, 'detail': (
            '%d <Parameter> element(s) without both name and value: they do not reach start.customParameters'
            % stream['bad_parameters'])})
    return problems


def stream_tracks(stream):
    """The tracks a stream's start message announces (and its media frames carry), from its track attribute."""
    track = (stream or {}).get('track') or 'inbound_track'
    if stream and stream.get('verb') == 'Start' and track in TRACKS['Start']:
        return {'inbound_track': ['inbound'], 'outbound_track': ['outbound'],
                'both_tracks': ['inbound', 'outbound']}[track]
    return ['inbound']


def local_stream_path(url, base, webhook_path):
    """Where the app serves a <Stream url> on this host -> dict(path, host, same_app, reachable: whether Twilio can
    connect to its host) or None without a url.

    On the public base URL's host, its path less the public prefix (a proxy strips it), // collapsed; with
    no public base URL known, its path as it is; a relative url is the webhook's own host. Another host:
    same_app False (the path is given, but nothing says this app serves it)."""
    if not url or re.search(r'\s', url):
        return None
    if '://' not in url:
        joined = re.sub('/+', '/', urljoin(webhook_path, url.split('?')[0]))
        return {'path': joined, 'host': None, 'same_app': True, 'reachable': True}
    parts = urlsplit(url)
    path = re.sub('/+', '/', parts.path) or '/'
    same = base is None or parts.netloc.lower() == base['netloc'] or _same_host(parts, base)
    if same and base and base['prefix'] and (path + '/').startswith(base['prefix'] + '/'):
        path = path[len(base['prefix']):] or '/'
    return {'path': path, 'host': parts.netloc, 'same_app': same, 'reachable': twilio_reaches(parts.hostname)}


def check_stream_url(url, base, ws_path):
    """Problems of a <Stream url> for Twilio -> list of dicts(kind, detail), most serious first.

    kinds: missing, malformed (31923), relative, scheme (31922: not wss), double_slash (31923), host (another
    host than the public base URL's, one Twilio cannot reach), elsewhere (another public host: valid, the stream is
    served there, a note), path (not the public prefix + ws_path), query (Twilio drops it).
    `base` is split_base_url(...) or None when the public URL is unknown (then host and path prefix are
    not checked)."""
    if not url:
        return [{'kind': 'missing', 'detail': '<Stream> has no url attribute'}]
    if re.search(r'\s', url):
        return [{'kind': 'malformed', 'detail': '%r is not a URL: it holds white space' % url}]
    if '://' not in url:
        return [{'kind': 'relative', 'detail': '%r is relative: it resolves against the https:// URL of the webhook, '
                 'and wss:// is the only scheme Twilio streams to' % url}]
    parts = urlsplit(url)
    problems = []
    if not parts.hostname:
        problems.append({'kind': 'malformed', 'detail': '%r has no host' % url})
    if _port_of(parts) == -1:
        problems.append({'kind': 'malformed', 'detail': '%r has a port that is not a number' % url})
    if parts.scheme.lower() != 'wss':
        problems.append({'kind': 'scheme', 'detail': '%r uses %s://, Twilio only connects to wss://' % (url, parts.scheme)})
    if '//' in parts.path:
        problems.append({'kind': 'double_slash', 'detail': '%r has // in its path %r' % (url, parts.path)})
    collapsed = re.sub('/+', '/', parts.path)
    other = base and parts.netloc.lower() != base['netloc'] and not _same_host(parts, base)
    if other and _port_of(parts) != -1 and twilio_reaches(parts.hostname):
        # Valid TwiML: Twilio streams to any wss:// host; its path is that host's business, not this app's.
        problems.append({'kind': 'elsewhere', 'detail': '%r points at %s, another host than the public base URL\'s '
                         '%s: the media WebSocket is served there, not by this app' % (url, parts.netloc, base['netloc'])})
    elif base:
        if other:
            problems.append({'kind': 'host', 'detail': '%r points at %s, not at the public base URL\'s host %s' % (
                url, parts.netloc, base['netloc'])})
        want = base['prefix'] + ws_path
        if collapsed != want:
            problems.append({'kind': 'path', 'detail': '%r has the path %s, the WebSocket is served at %s' % (
                url, parts.path, want)})
    elif not collapsed.endswith(ws_path):
        problems.append({'kind': 'path', 'detail': '%r has the path %s, the WebSocket is served at %s' % (
            url, parts.path, ws_path)})
    if parts.query:
        problems.append({'kind': 'query', 'detail': '%r carries the query string ?%s, which Twilio does not pass '
                         'on to the WebSocket' % (url, parts.query)})
    return problems


def twilio_reaches(hostname):
    """Whether Twilio's cloud can connect to a URL's host: a public name (with a dot) or a public address; never
    localhost, a single-label name, or a loopback, private or link-local address."""
    host = (hostname or '').strip('[]').lower()
    try:
        address = ipaddress.ip_address(u'%s' % host)
    except ValueError:
        return '.' in host.strip('.') and host != 'localhost' and not host.endswith(('.localhost', '.local'))
    return address.is_global


def _same_host(parts, base):
    """voice.example.com and voice.example.com:443 (wss default port) are the same place."""
    port = _port_of(parts)
    return (parts.hostname or '').lower() == base['host'] and port in (None, 443) and base['port'] in (None, 443)


# --- Media Streams messages (https://www.twilio.com/docs/voice/media-streams/websocket-messages) ----
def connected_message():
    return {'event': 'connected', 'protocol': 'Call', 'version': '1.0.0'}


def start_message(stream_sid, call_sid, account_sid, custom_parameters=None, tracks=('inbound',)):
    return {
        'event': 'start', 'sequenceNumber': '1', 'streamSid': stream_sid,
        'start': {
            'accountSid': account_sid, 'streamSid': stream_sid, 'callSid': call_sid, 'tracks': list(tracks),
            'customParameters': custom_parameters or {},
            'mediaFormat': {'encoding': 'audio/x-mulaw', 'sampleRate': SAMPLE_RATE, 'channels': 1},
        },
    }


def media_message(stream_sid, sequence, chunk, payload, track='inbound'):
    return {
        'event': 'media', 'sequenceNumber': str(sequence), 'streamSid': stream_sid,
        'media': {'track': track, 'chunk': str(chunk), 'timestamp': str((chunk - 1) * FRAME_MS),
                  'payload': base64.b64encode(payload).decode('ascii')},
    }


def mark_message(stream_sid, sequence, name):
    return {'event': 'mark', 'sequenceNumber': str(sequence), 'streamSid': stream_sid, 'mark': {'name': name}}


def stop_message(stream_sid, sequence, call_sid, account_sid):
    return {'event': 'stop', 'sequenceNumber': str(sequence), 'streamSid': stream_sid,
            'stop': {'accountSid': account_sid, 'callSid': call_sid}}


# --- mu-law (G.711) ---------------------------------------------------------------------------------
def ulaw_encode_sample(sample):
    """One signed 16-bit PCM sample -> one mu-law byte (G.711, inverted: silence is 0xFF)."""
    value = sample >> 2                   # mu-law is defined on 14-bit samples
    mask = 0xFF
    if value < 0:
        value, mask = -value, 0x7F
    value = min(value + 0x21, 0x1FFF)     # bias, then clip at the top of the last segment
    segment = max(value.bit_length() - 6, 0)
    mantissa = (value >> (segment + 1)) & 0x0F
    return ((segment << 4) | mantissa) ^ mask


def tone_frames(count, freq_hz=440, amplitude=0.2):
    """`count` 20 ms frames (160 bytes each) of a mu-law sine tone: what a caller's voice looks like. A tone of a
    whole number of hertz repeats every SAMPLE_RATE / gcd(freq_hz, SAMPLE_RATE) samples (200 at 440 Hz): one period
    is encoded and repeated (encoding every sample of the call in Python cost a host ~15 ms per probe)."""
    peak = amplitude * 32767
    period = SAMPLE_RATE // math.gcd(freq_hz, SAMPLE_RATE)
    one = bytes(ulaw_encode_sample(int(round(peak * math.sin(2 * math.pi * freq_hz * n / SAMPLE_RATE))))
                for n in range(period))
    samples = count * FRAME_BYTES
    audio = one * (samples // period + 1)
    return [audio[i:i + FRAME_BYTES] for i in range(0, samples, FRAME_BYTES)]


# --- what the server sends back ---------------------------------------------------------------------
def check_server_message(opcode_text, data, stream_sid):
    """One frame from the app -> (event or None, problem or None, payload size or None).

    opcode_text: True for a text frame. A problem is a dict(kind, detail): binary, json, event,
    stream_sid, payload (what Twilio would reject with 31924)."""
    if not opcode_text:
        return None, {'kind': 'binary', 'detail': 'a binary frame of %d bytes (Twilio expects JSON text frames)'
                      % len(data)}, None
    try:
        message = json.loads(data)
    except ValueError:
        return None, {'kind': 'json', 'detail': 'a text frame that is not JSON: %r' % (data[:60],)}, None
    if not isinstance(message, dict):
        return None, {'kind': 'json', 'detail': 'a JSON %s, not an object' % type(message).__name__}, None
    event = message.get('event')
    if event not in SERVER_EVENTS:
        return event, {'kind': 'event', 'detail': 'event %r (a server may send only media, mark and clear)'
                       % (event,)}, None
    if message.get('streamSid') != stream_sid:
        return event, {'kind': 'stream_sid', 'detail': '%s with streamSid %r, the call\'s is %r' % (
            event, message.get('streamSid'), stream_sid)}, None
    if event != 'media':
        return event, None, None
    payload = (message.get('media') or {}).get('payload') if isinstance(message.get('media'), dict) else None
    if not isinstance(payload, str):
        return event, {'kind': 'payload', 'detail': 'media without media.payload'}, None
    try:
        audio = base64.b64decode(payload.encode('ascii'), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return event, {'kind': 'payload', 'detail': 'media.payload is not base64'}, None
    size = len(audio)
    if audio[:4] == b'RIFF' or audio[:4] == b'.snd':
        return event, {'kind': 'payload', 'detail': 'media.payload of %d bytes starts with a %s file header: '
                       'Twilio plays raw mu-law, no header' % (size, 'WAV' if audio[:4] == b'RIFF' else 'AU')}, size
    if size != FRAME_BYTES:
        hint = SIZE_HINTS.get(size) or ('%d bytes = %.1f ms of 8 kHz mu-law' % (size, size / 8.0))
        return event, {'kind': 'payload', 'detail': 'media.payload of %d bytes, not %d (%s)' % (
            size, FRAME_BYTES, hint)}, size
    return event, None, size
