# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""voice layer: would calls work? TwiML, status callback, the Twilio WebSocket (runbook section 5)

Runs on the target against 127.0.0.1:$PORT, the way Twilio reaches the app through its proxy: the
webhooks are POSTed with Twilio's form fields (signed with X-Twilio-Signature over the public URL
when an auth token is given), the media stream gets a one-second call of 20 ms mu-law frames, sent at
real time (doctor_voice_pace 1, the default) or faster (audit.yml: 4). Facts only; judge_voice.py decides
what they mean. Secrets never enter the facts: the auth token only signs, the Google credentials are
read for their shape (key names, booleans, path, mode, owner).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import binascii
import json
import os
import re
import socket
import stat
import struct
import sys
import threading
import time

try:
    from http.client import HTTPException
    from urllib.parse import urlencode
except ImportError:  # pragma: no cover - Python 2 is not a target
    HTTPException = urlencode = None

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import deadline_http, safe_read
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import cpu_load, cpu_quota
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import service_env, twilio

HTTP_TIMEOUT = 3.0        # each webhook request, all of it (on an idle host: see bounds_scale)
WS_TIMEOUT = 3.0          # connect + handshake, all of it (idem)
SCALE_MAX = cpu_load.SCALE_MAX   # on a slow host the bounds above and the call's grow at most this much
QUICK_HEALTHZ_MS = 250.0  # a /healthz 200 slower than this says the app gets little CPU now
CALL_FRAMES = 50          # one second of 20 ms frames
DRAIN_QUIET = 0.2         # after the last frame: this long without a reply ends the wait for replies
DRAIN_MAX = 1.0           # ... and never longer than this
CLOSE_TIMEOUT = 1.0
RECV_POLL = 0.05
LOG_WAIT = 0.5            # MEDIA_TX lines may reach the log a moment after the frames
BODY_MAX = 64 << 10
CALL_BYTES_MAX = 1 << 20  # all the app may send during the one-second call: ~100 x its 50 media frames
CALL_FRAMES_MAX = 1000    # ... in at most this many frames (Twilio sends 50 media frames in that second)
CREDENTIALS_MAX = 1 << 20
LOG_READ_MAX = 1 << 20
SCAN_FILES_MAX = 2000
SCAN_BYTES_MAX = 256 << 10
PROBLEMS_KEPT = 5
USER_AGENT = 'TwilioProxy/1.1 (sre.gunicorn_doctor)'
REQUIRED_KEYS = ('type', 'project_id', 'private_key', 'client_email')
KNOWN_TYPES = ('service_account', 'authorized_user', 'external_account', 'impersonated_service_account')
GOOGLE_REFERENCE = re.compile(r'\b(google\.cloud|google-cloud-[\w-]+|google\.auth|google\.oauth2|'
                              r'GOOGLE_APPLICATION_CREDENTIALS|speech_v1\w*|texttospeech\w*)\b')
SKIP_DIRS = ('node_modules', 'site-packages', 'dist-packages', '__pycache__', 'venv', 'env')


def collect(context):
    """-> facts of the voice layer (see judge_voice for what they mean)."""
    started = time.time()
    p = context['params']
    env = context.get('env') or {}
    port = context['port']
    masters = (context.get('process') or {}).get('masters') or []
    master = masters[0] if masters else None
    env_source = _env_source(masters, p.get('env_file'))
    base_value, base_source = _public_base(p, env, env_source)
    base = twilio.split_base_url(base_value)
    facts = {
        'public_base_url': base_value,
        'public_base_url_source': base_source,
        'public_base': base,
        'env_public_base_url': twilio.mask_userinfo((env.get('PUBLIC_BASE_URL') or '').strip()) or None,   # the app's
        'local_base': 'http://127.0.0.1:%d' % port,
        'paths': {'incoming_call': p['incoming_call_path'], 'stream_status': p['stream_status_path'],
                  'ws': p['ws_path']},
        'signed': bool(p.get('twilio_auth_token')),
        'env_source': env_source,
        'worker': _worker(master),
        'healthz_stable': context.get('stable'),
        'http_skipped': _http_skip_reason(context),
        'twiml': None, 'status_callback': None, 'websocket': None, 'media_tx': None,
    }
    facts['gcp'] = gcp_facts(p.get('gcp_credentials_env'), env, env_source, p['chdir'], master, context.get('psutil'))
    if not facts['http_skipped']:
        throttled = cpu_quota.throttled_share(context.get('cpu_before'), cpu_quota.sample(master and master['pid']))
        facts['bounds'] = bounds_scale(context.get('healthz'), throttled=throttled)
        _probe_http(facts, p, env, port, base, p.get('voice_pace') or 1.0, context.get('deadline'))
    facts['seconds'] = round(time.time() - started, 3)
    return facts


def _probe_http(facts, p, env, port, base, pace, within=None):
    token = p.get('twilio_auth_token') or None
    scale = (facts.get('bounds') or {}).get('scale') or 1.0
    account_sid = env.get('TWILIO_ACCOUNT_SID', '')
    if not re.match(r'^AC[0-9a-f]{32}$', account_sid):
        account_sid = twilio.sid('AC', 'sre.gunicorn_doctor')
    nonce = binascii.hexlify(os.urandom(8)).decode('ascii')
    call_sid, stream_sid = twilio.sid('CA', nonce), twilio.sid('MZ', nonce)
    # What Twilio's request looks like when it reaches the app through a host-preserving TLS proxy.
    host = base['netloc'] if base else '127.0.0.1:%d' % port
    proto = base['scheme'] if base and base['scheme'] in ('http', 'https') else None
    sign_base = base['clean'] if base else 'http://127.0.0.1:%d' % port

    twiml = post_form(port, p['incoming_call_path'], twilio.incoming_call_fields(call_sid, account_sid), host, proto,
                      token, sign_base, HTTP_TIMEOUT * scale, within)
    custom = {}
    if twiml['status'] == 200:
        parsed = twilio.parse_twiml(twiml.pop('body'))
        for stream in parsed['streams']:
            custom = custom or dict((k, v) for k, v in stream.pop('parameter_values').items() if k)
        twiml['parsed'] = parsed
        twiml['body_head'] = twilio.mask_twiml_parameters(twiml['body_head'])
    else:
        twiml.pop('body', None)
    facts['twiml'] = twiml
    if twiml['error'] and ('no answer within' in twiml['error'] or 'no complete answer within' in twiml['error']):
        why = 'the TwiML webhook did not answer within %g s: the worker is busy or stuck' % (HTTP_TIMEOUT * scale)
        facts['status_callback'] = {'skipped': why}
        facts['websocket'] = {'skipped': why, 'url': 'ws://127.0.0.1:%d%s' % (port, p['ws_path'])}
        return
    status = post_form(port, p['stream_status_path'], twilio.stream_status_fields(call_sid, account_sid, stream_sid),
                       host, proto, token, sign_base, HTTP_TIMEOUT * scale, within)
    status.pop('body', None)
    facts['status_callback'] = status

    log_file = p.get('log_file')
    log_mark = _log_size(log_file)
    stream = stream_target(twiml.get('parsed'), base, p, port)
    facts['stream'] = stream
    facts['paths']['ws'] = stream['path']
    if stream.get('elsewhere'):
        # Another public host serves the media WebSocket: nothing of it runs here, and a probe never leaves the host.
        facts['websocket'] = {'skipped': 'the media WebSocket is served elsewhere', 'elsewhere': stream['url'],
                              'url': stream['url']}
        return
    facts['websocket'] = probe_websocket(port, stream['path'], host, stream_sid, call_sid, account_sid, custom, pace,
                                         within, stream=stream, scale=scale)
    round_trip = facts['websocket'].get('round_trip')
    if round_trip is not None and not round_trip.get('one_way'):   # a one-way stream plays no audio from the app
        facts['media_tx'] = media_tx_lines(log_file, log_mark, stream_sid, (round_trip.get('events') or {}).get('media', 0))


# --- where things come from ---------------------------------------------------------------------------
def _env_source(masters, env_file):
    """A human label for where the service environment was read (as host_probe.service_environment)."""
    for m in masters:
        if service_env.read_proc_environ(m['pid']):
            return 'the environment of master %d (/proc/%d/environ)' % (m['pid'], m['pid'])
    if env_file:
        return "doctor_env_file %s over the runner's configuration (no master runs)" % env_file
    return "the runner's configuration (no master runs, no doctor_env_file)"


def _public_base(p, env, env_source):
    if p.get('public_base_url'):
        return twilio.mask_userinfo(p['public_base_url'].strip()), 'doctor_public_base_url'
    if (env.get('PUBLIC_BASE_URL') or '').strip():
        return twilio.mask_userinfo(env['PUBLIC_BASE_URL'].strip()), 'PUBLIC_BASE_URL in %s' % env_source
    return None, None


def _worker(master):
    if not master:
        return None
    s = master.get('settings') or {}
    return {'pid': master['pid'], 'worker_class': s.get('worker_class'), 'workers': s.get('workers'),
            'timeout': s.get('timeout'), 'threads': s.get('threads'), 'worker_connections': s.get('worker_connections')}


def _http_skip_reason(context):
    """The webhooks and the stream are tried whenever the port answers HTTP at all (even a 500 or a 404
    on /healthz: the voice routes may still work and say more); not when nothing answers."""
    healthz = context.get('healthz')
    if not healthz or not healthz.get('samples'):
        return None
    if any(s.get('status') for s in healthz['samples']):
        return None
    errors = sorted(set(s.get('error') or 'no answer' for s in healthz['samples']))
    return ('nothing answers HTTP on 127.0.0.1:%d (/healthz: %s): calls come back only once /healthz is a '
            'stable 200 (runbook section 5); fix the first failing layer above, then run the diagnosis again'
            % (context['port'], ', '.join(errors)))


def stream_target(parsed, base, p, port):
    """The TwiML's first <Stream> and where this app serves it -> dict(verb, tracks, path, from_twiml, other_host).

    The path is the <Stream url>'s on this app (twilio.local_stream_path): on the public host, relative, or on
    another name of this host (loopback, its hostname, at the app's port or the wss default); otherwise, and
    without a usable <Stream>, doctor_ws_path."""
    streams = (parsed or {}).get('streams') or []
    out = {'verb': None, 'tracks': ['inbound'], 'path': p['ws_path'], 'from_twiml': False, 'other_host': None,
           'url': None, 'elsewhere': False}
    if not streams:
        return out
    stream = streams[0]
    out.update(verb=stream['verb'], tracks=twilio.stream_tracks(stream), url=stream['url'])
    local = twilio.local_stream_path(stream['url'], base, p['incoming_call_path'])
    if local is None:
        return out
    if not local['same_app']:
        out['other_host'] = local['host']
        if not _this_host(local['host'], port):
            # A public host Twilio reaches serves it (valid TwiML); an unreachable one is judged wrong, and the
            # app's own WebSocket is tried at doctor_ws_path.
            out['elsewhere'] = local['reachable']
            return out
    out.update(path=local['path'], from_twiml=True)
    return out


def _this_host(netloc, port):
    """Whether a URL's host:port reaches this app on this machine (a loopback address or the hostname)."""
    host, _colon, number = netloc.rpartition(':') if netloc.rpartition(':')[2].isdigit() else (netloc, '', '')
    host = host.strip('[]').lower()
    names = ('127.0.0.1', 'localhost', '::1', '0.0.0.0', socket.gethostname().lower())
    return host in names and number in ('', '443', str(port))


# --- webhooks -----------------------------------------------------------------------------------------
def post_form(port, path, fields, host, proto, token, sign_base, timeout=HTTP_TIMEOUT, within=None):
    """POST `fields` to http://127.0.0.1:port/path as Twilio would, all of it within `timeout` s -> facts of the
    answer (+ 'body')."""
    headers = {'Host': host, 'Content-Type': 'application/x-www-form-urlencoded', 'User-Agent': USER_AGENT,
               'Accept': '*/*'}
    if proto:
        headers['X-Forwarded-Proto'] = proto
    signed_url = None
    if token:
        signed_url = sign_base + path
        headers['X-Twilio-Signature'] = twilio.signature(token, signed_url, fields)
    result = {'method': 'POST', 'url': 'http://127.0.0.1:%d%s' % (port, path), 'host_header': host,
              'forwarded_proto': proto, 'signed_url': signed_url, 'status': None, 'reason': None,
              'content_type': None, 'body_bytes': None, 'body_head': None, 'error': None, 'ms': None}
    started = time.time()
    try:
        answer = deadline_http.request('127.0.0.1', port, 'POST', path, headers=headers, body=urlencode(fields),
                                       timeout=timeout, body_max=BODY_MAX, within=within)
        body = answer['body']
        result.update(status=answer['status'], reason=answer['reason'],
                      content_type=answer['headers'].get('content-type'), body_bytes=len(body))
        text = body.decode('utf-8', 'replace')
        result['body_head'] = text[:600]
        result['body'] = text
    except socket.timeout:
        result['error'] = 'no answer within %g s' % timeout
    except (IOError, OSError) as e:   # refused, reset; out of time, too large
        result['error'] = getattr(e, 'strerror', None) or str(e) or e.__class__.__name__
    except HTTPException as e:
        result['error'] = '%s: %s' % (e.__class__.__name__, e)
    result['ms'] = round((time.time() - started) * 1000, 1)
    return result


# --- the media stream ---------------------------------------------------------------------------------
def websocket_client():
    """websocket-client, imported when a WebSocket is probed (a host whose app does not answer never compiles it), or
    None when it is missing or is the unrelated `websocket` 0.2 package."""
    try:
        import websocket
    except ImportError:
        return None
    return websocket if hasattr(websocket, 'create_connection') else None


def probe_websocket(port, path, host, stream_sid, call_sid, account_sid, custom_parameters, pace=1.0, within=None,
                    stream=None, scale=1.0):
    """Handshake like Twilio (Sec-WebSocket-Protocol: audio.twilio.com), then a one-second call (`pace` and
    `stream`: see media_round_trip). The handshake has WS_TIMEOUT s in all, the call call_seconds(), each times `scale`
    (bounds_scale); what the app may send is capped (HEADER_MAX for the handshake answer, CALL_BYTES_MAX and
    CALL_FRAMES_MAX for the call)."""
    handshake_s, call_s = WS_TIMEOUT * scale, call_seconds(pace) * scale
    url = 'ws://127.0.0.1:%d%s' % (port, path)
    out = {'url': url, 'host_header': host, 'skipped': None, 'library': None, 'status': None, 'reason': None,
           'error': None, 'accept_valid': None, 'subprotocol': None, 'headers': {}, 'body_head': None,
           'round_trip': None}
    websocket = websocket_client()
    if websocket is None:
        out['skipped'] = 'the websocket-client library is not installed for %s (the interpreter the probe runs in)' \
            % sys.executable
        out['install'] = '%s -m pip install websocket-client' % sys.executable
        return out
    out['library'] = 'websocket-client %s' % getattr(websocket, '__version__', '?')
    key = base64.b64encode(os.urandom(16)).decode('ascii')
    out['accept_expected'] = twilio.ws_accept(key)
    started = time.monotonic()
    deadline = deadline_http.Deadline(handshake_s, within, why='no complete handshake answer within %g s' % handshake_s)
    try:
        sock = deadline_http.BoundedSocket(deadline_http.connect(['127.0.0.1'], port, deadline), deadline,
                                           too_large=deadline_http.HANDSHAKE_TOO_LARGE,
                                           doing='the handshake answer was still arriving')
        # The subprotocol goes in as a plain header, not subprotocols=[...]: the library would refuse a
        # 101 without it, and its absence is exactly what the judge must see. The receiver checks that text frames
        # are UTF-8 itself (bytes.decode): the library's check runs byte by byte in Python.
        ws = websocket.create_connection(
            url, timeout=handshake_s, host=host, suppress_origin=True, socket=sock, enable_multithread=True,
            skip_utf8_validation=True,
            header={'Sec-WebSocket-Key': key, 'Sec-WebSocket-Protocol': twilio.SUBPROTOCOL, 'User-Agent': USER_AGENT})
    except websocket.WebSocketBadStatusException as e:
        body = getattr(e, 'resp_body', None) or b''
        out.update(status=e.status_code, reason=getattr(e, 'status_message', None),
                   headers=_ws_headers(getattr(e, 'resp_headers', None) or {}),
                   body_head=body[:300].decode('utf-8', 'replace') if isinstance(body, bytes) else None)
        return out
    except (websocket.WebSocketTimeoutException, socket.timeout):
        out['error'] = 'no handshake answer within %g s' % handshake_s
        return out
    except websocket.WebSocketException as e:
        # A 101 the library rejects (Upgrade, Connection or Sec-WebSocket-Accept wrong): ask once more,
        # by hand, to show which header it was.
        out['error'] = str(e)[:200]
        out.update(raw_handshake(port, path, host, key, within))
        return out
    except (IOError, OSError) as e:   # refused, reset; out of time, too large
        out['error'] = getattr(e, 'strerror', None) or str(e) or e.__class__.__name__
        return out
    sock.deadline = deadline_http.Deadline(call_s, within, why='the call did not end within %g s' % call_s)
    sock.limit(CALL_BYTES_MAX, 'the app sent more than %d MiB during the one-second call (a giant frame or a '
               'flood)' % (CALL_BYTES_MAX >> 20), 'the call was still on')
    try:
        headers = ws.getheaders() or {}
        out['status'] = ws.getstatus()
        out['headers'] = _ws_headers(headers)
        out['accept_valid'] = headers.get('sec-websocket-accept') == twilio.ws_accept(key)
        out['subprotocol'] = headers.get('sec-websocket-protocol')
        out['round_trip'] = media_round_trip(ws, stream_sid, call_sid, account_sid, custom_parameters, pace=pace,
                                             stream=stream)
    finally:
        try:
            ws.close(timeout=CLOSE_TIMEOUT)
        except Exception:  # the peer may be gone already; close() must not mask the findings
            pass
        ws.shutdown()
    out['held_seconds'] = round(time.monotonic() - started, 2)
    return out


def bounds_scale(healthz, load=None, cpus=None, throttled=None):
    """How much longer than on an idle host the webhooks, the handshake and the call may take here now -> dict(scale
    from 1 to SCALE_MAX, why). A loaded host answers late whatever the app does, and an app starved of CPU answers
    its cheapest route late too: the largest of the run queue per CPU (/proc/loadavg: the 1-minute average, or the
    tasks runnable now), the slowest /healthz 200 of the window over QUICK_HEALTHZ_MS and, for an app held to a CPU
    quota (`throttled`: the share of its cgroup's periods that ran out of quota since the window began, see
    cpu_quota.py), 1 / (1 - that share): the app ran that much slower than its quota-free self. An idle host with a
    quick /healthz and no quota spent keeps the idle bounds: a webhook that does not answer there is the app's fault,
    found as fast as before."""
    by_load, why = cpu_load.scale(load, cpus)
    quick = [s['latency_ms'] for s in (healthz or {}).get('samples') or [] if s.get('status') == 200 and s.get('latency_ms')]
    slowest = max(quick) if quick else 0.0
    quota = 1.0 / max(1.0 - throttled, 1.0 / SCALE_MAX) if throttled else 1.0
    scale = min(SCALE_MAX, max(by_load, slowest / QUICK_HEALTHZ_MS, quota))
    why += ', slowest /healthz 200 %.0f ms' % slowest
    if throttled is not None:
        why += ', CPU quota ran out in %.0f%% of the periods' % (100 * throttled)
    return {'scale': round(scale, 2), 'why': why}


def call_seconds(pace):
    """The most a call may take: its second of audio (at `pace`, but replies are awaited for the real-time
    second), the wait for the last replies, the close, and a second of slack."""
    return CALL_FRAMES * twilio.FRAME_MS / 1000.0 + DRAIN_MAX + CLOSE_TIMEOUT + 1.0


def _ws_headers(headers):
    wanted = ('upgrade', 'connection', 'sec-websocket-accept', 'sec-websocket-protocol', 'server', 'content-type')
    return dict((k.lower(), v) for k, v in headers.items() if k.lower() in wanted)


def raw_handshake(port, path, host, key, within=None):
    """The upgrade request as plain HTTP, for the evidence when the library rejects the answer."""
    try:
        answer = deadline_http.request('127.0.0.1', port, 'GET', path, timeout=WS_TIMEOUT, body_max=0, within=within,
                                       headers={'Host': host, 'Upgrade': 'websocket', 'Connection': 'Upgrade',
                                                'Sec-WebSocket-Key': key, 'Sec-WebSocket-Version': '13',
                                                'Sec-WebSocket-Protocol': twilio.SUBPROTOCOL, 'User-Agent': USER_AGENT})
    except (IOError, OSError, HTTPException) as e:
        return {'raw_error': str(e) or e.__class__.__name__}
    headers = answer['headers']
    return {'status': answer['status'], 'reason': answer['reason'], 'headers': _ws_headers(headers),
            'accept_valid': headers.get('sec-websocket-accept') == twilio.ws_accept(key),
            'subprotocol': headers.get('sec-websocket-protocol')}


def _is_utf8(data):
    try:
        data.decode('utf-8')
    except UnicodeDecodeError:
        return False
    return True


class _Receiver(threading.Thread):
    """Reads every frame the app sends during the call, with its arrival time."""

    def __init__(self, ws, t0):
        super(_Receiver, self).__init__(name='voice-ws-receiver')
        self.daemon = True
        self.ws = ws
        self.t0 = t0
        self.frames = []          # (seconds since t0, is_text, data)
        self.closed = None        # the app's close frame: dict(at, code, reason)
        self.error = None
        self.stopped = None       # why the doctor stopped reading: the call's deadline or caps
        self.out_of_time = False  # ... and it was a deadline (a slow call), not a cap (a flood)
        self.done = threading.Event()
        self.arrived = threading.Condition()

    def run(self):
        websocket = websocket_client()   # imported already: the call runs on its connection
        while not self.done.is_set():
            try:
                opcode, data = self.ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except websocket.WebSocketConnectionClosedException:
                self._closed(None, 'the connection dropped without a close frame')
                return
            except (deadline_http.OutOfTime, deadline_http.TooLarge) as e:   # the call's bounds: stop reading
                self.out_of_time = isinstance(e, deadline_http.OutOfTime)
                self._stop_reading(str(e))
                return
            except Exception as e:  # a protocol error of the app's frames (bad UTF-8, bad framing)
                self.error = '%s: %s' % (e.__class__.__name__, str(e)[:200])
                self._closed(None, 'the client gave up on a bad frame')
                return
            now = time.monotonic() - self.t0
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = struct.unpack('!H', data[:2])[0] if len(data) >= 2 else None
                self._closed(code, data[2:120].decode('utf-8', 'replace'), now)
                return
            is_text = opcode == websocket.ABNF.OPCODE_TEXT
            if is_text and not _is_utf8(data):
                self.error = 'a text frame that is not UTF-8: %r' % data[:60]
                self._closed(None, 'the client gave up on a bad frame')
                return
            with self.arrived:
                self.frames.append((now, is_text, data))
                self.arrived.notify_all()
            if len(self.frames) >= CALL_FRAMES_MAX:
                self._stop_reading('the app sent %d frames during the one-second call; the doctor reads no more'
                                   % len(self.frames))
                return

    def _stop_reading(self, why):
        self.stopped = why
        self._closed(None, 'the doctor stopped reading: %s' % why)

    def _closed(self, code, reason, at=None):
        with self.arrived:
            self.closed = {'at': at if at is not None else time.monotonic() - self.t0, 'code': code, 'reason': reason}
            self.arrived.notify_all()


def media_round_trip(ws, stream_sid, call_sid, account_sid, custom_parameters, frames=CALL_FRAMES, pace=1.0,
                     stream=None):
    """connected, start, `frames` x 20 ms media paced by the monotonic clock, mark, stop -> facts of what
    the app sent back while the call was open.

    `stream` (stream_target) shapes the call: a one-way <Start> stream gets what Twilio sends it (start with
    its tracks, a media frame per track every 20 ms, stop: no mark, nothing is awaited back); a <Connect>
    stream the two-way call above. pace 1 sends a frame every 20 ms, as Twilio does; pace N every 20/N ms:
    the same audio and the same checks, the call N times shorter (an audit of many hosts need not wait a
    second on each)."""
    websocket = websocket_client()   # imported already: `ws` is its connection
    one_way = bool(stream and stream.get('verb') == 'Start')
    tracks = list((stream or {}).get('tracks') or ['inbound'])
    audio = twilio.tone_frames(frames)
    frame_s = twilio.FRAME_MS / 1000.0 / pace
    t0 = time.monotonic()
    ws.settimeout(RECV_POLL)   # the receiver wakes up this often to see whether the call is over
    receiver = _Receiver(ws, t0)
    receiver.start()
    sent, max_lag, seq, error = 0, 0.0, 1, None
    stop_at = media_start = None
    try:
        ws.send(json.dumps(twilio.connected_message()))
        ws.send(json.dumps(twilio.start_message(stream_sid, call_sid, account_sid, custom_parameters, tracks)))
        media_start = time.monotonic()
        for i in range(frames):
            due = media_start + i * frame_s
            wait = due - time.monotonic()
            with receiver.arrived:
                if receiver.closed is None and wait > 0:
                    receiver.arrived.wait_for(lambda: receiver.closed is not None, wait)
                if receiver.closed is not None:
                    break
            for track in tracks:
                seq += 1
                ws.send(json.dumps(twilio.media_message(stream_sid, seq, i + 1, audio[i], track)))
                sent += 1
            max_lag = max(max_lag, time.monotonic() - due)
        media_end = time.monotonic()
        if receiver.closed is None:
            if not one_way:
                seq += 1
                ws.send(json.dumps(twilio.mark_message(stream_sid, seq, 'sre-gunicorn-doctor')))
            _await_replies(receiver, media_end, media_end if one_way else media_start + frames * twilio.FRAME_MS / 1000.0)
            seq += 1
            stop_at = time.monotonic() - t0
            ws.send(json.dumps(twilio.stop_message(stream_sid, seq, call_sid, account_sid)))
    except (websocket.WebSocketException, IOError, OSError) as e:
        error = '%s: %s' % (e.__class__.__name__, str(e)[:200])
    finally:
        receiver.done.set()
        receiver.join(RECV_POLL * 4 + 1)
    summary = _summarize(receiver, stream_sid, sent, frames * len(tracks), media_start - t0 if media_start else None,
                         max_lag, stop_at, error)
    summary.update(pace=pace, frame_interval_ms=round(frame_s * 1000, 2), one_way=one_way, tracks=tracks)
    return summary


def _await_replies(receiver, media_end, real_end):
    """Until the mark comes back, or DRAIN_QUIET without a frame, at most DRAIN_MAX after the last frame.

    Faster than real time (real_end after media_end), an app that has sent no audio back yet is heard until the
    call's real-time end first: one that starts talking a few hundred ms into the call is still checked."""
    deadline = max(media_end, real_end) + DRAIN_MAX
    with receiver.arrived:
        while receiver.closed is None:
            now = time.monotonic()
            if now < real_end and not any(f[1] and b'"media"' in f[2] for f in receiver.frames):
                receiver.arrived.wait(min(real_end - now, RECV_POLL * 2))
                continue
            last = max([media_end] + [receiver.t0 + f[0] for f in receiver.frames[-1:]])
            quiet_until = last + DRAIN_QUIET
            if now >= deadline or now >= quiet_until or any(
                    f[1] and b'"mark"' in f[2] for f in receiver.frames[-3:]):
                return
            receiver.arrived.wait(min(deadline, quiet_until) - now)


def _summarize(receiver, stream_sid, sent, planned, media_start, max_lag, stop_at, error):
    events, sizes, problems = {}, {}, []
    first_media = last_media = None
    after_stop = 0
    mark_echoed = False
    problem_count = 0
    for index, (at, is_text, data) in enumerate(receiver.frames):
        if stop_at is not None and at > stop_at:
            after_stop += 1
            continue
        text = data.decode('utf-8', 'replace') if is_text and isinstance(data, bytes) else data
        event, problem, size = twilio.check_server_message(is_text, text, stream_sid)
        key = event if isinstance(event, str) else '(none)'
        events[key] = events.get(key, 0) + 1
        if size is not None:
            sizes[str(size)] = sizes.get(str(size), 0) + 1
        if event == 'media':
            first_media = at if first_media is None else first_media
            last_media = at
        if event == 'mark' and problem is None:
            mark_echoed = True
        if problem:
            problem_count += 1
            if len(problems) < PROBLEMS_KEPT:
                problem.update(index=index + 1, at_ms=round(at * 1000))
                problems.append(problem)
    closed = receiver.closed
    if closed is not None:
        closed = {'at_ms': round(closed['at'] * 1000), 'code': closed['code'], 'reason': closed['reason'],
                  'before_stop': stop_at is None or closed['at'] < stop_at}
    return {
        'stream_sid': stream_sid, 'planned_media': planned, 'sent_media': sent,
        'media_start_ms': None if media_start is None else round(media_start * 1000),
        'max_send_lag_ms': round(max_lag * 1000, 1), 'stop_at_ms': None if stop_at is None else round(stop_at * 1000),
        'received': len(receiver.frames), 'events': events, 'media_sizes': sizes,
        'first_media_ms': None if first_media is None else round(first_media * 1000),
        'last_media_ms': None if last_media is None else round(last_media * 1000),
        'mark_echoed': mark_echoed, 'after_stop': after_stop, 'problems': problems, 'problem_count': problem_count,
        'closed_by_app': closed, 'receive_error': receiver.error, 'send_error': error,
        'stopped_reading': receiver.stopped, 'out_of_time': receiver.out_of_time,
    }


# --- MEDIA_TX lines -----------------------------------------------------------------------------------
def _log_size(path):
    try:
        return os.path.getsize(path) if path else None
    except (IOError, OSError):
        return None


def _read_from(path, offset):
    """What the log gained since `offset` (its last LOG_READ_MAX bytes at most)."""
    done = safe_read.read_text(path, LOG_READ_MAX, tail=True, follow=True, start=offset)
    if done.size is not None and done.size < offset:   # rotated or truncated meanwhile: read the new file
        done = safe_read.read_text(path, LOG_READ_MAX, tail=True, follow=True)
    return done.data or ''


def media_tx_lines(path, offset, stream_sid, expected):
    """MEDIA_TX lines the app logged during the call (the log's growth since `offset`)."""
    if not path or offset is None:
        return {'log': path, 'count': None, 'reason': 'no log file to read' if not path else 'the log cannot be read'}
    deadline = time.monotonic() + LOG_WAIT
    last_size, still_since = -1, time.monotonic()
    while True:
        text = _read_from(path, offset)
        lines = [line for line in text.splitlines() if 'MEDIA_TX' in line]
        size = len(text)
        now = time.monotonic()
        if size != last_size:
            last_size, still_since = size, now
        # Await the lines, not a fixed delay: done when there are as many as frames came back, or the
        # log has stopped growing, or the bound is reached; at once when no frame came back.
        # A log that has not grown yet while frames came back may be relayed (supervisord, journald): wait.
        if (expected and len(lines) >= expected) or not expected or now - still_since >= 0.15 or now >= deadline:
            break
        time.sleep(0.02)
    return {'log': path, 'count': len(lines), 'with_stream_sid': len([line for line in lines if stream_sid in line]),
            'first': lines[0][:200] if lines else None, 'reason': None}


# --- Google credentials -------------------------------------------------------------------------------
def _service_identity(master, psutil):
    """uid, gids and name of the service user (the master's), else the prober's own."""
    if master and psutil is not None:
        try:
            proc = psutil.Process(master['pid'])
            uid, gid = proc.uids().effective, proc.gids().effective
            groups = set([gid] + _proc_groups(master['pid']))
            return {'uid': uid, 'gids': sorted(groups), 'name': master.get('username') or str(uid),
                    'who': 'master %d' % master['pid']}
        except Exception:  # psutil.NoSuchProcess/AccessDenied: the master is gone or hidden
            pass
    return {'uid': os.geteuid(), 'gids': sorted(set([os.getegid()] + os.getgroups())), 'name': _user_name(os.geteuid()),
            'who': 'the prober (no master runs)'}


def _proc_groups(pid):
    for line in (safe_read.read_text('/proc/%d/status' % pid, 64 << 10).data or '').splitlines():
        if line.startswith('Groups:'):
            try:
                return [int(g) for g in line.split()[1:]]
            except ValueError:
                return []
    return []


def _user_name(uid):
    try:
        import pwd
        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def _group_name(gid):
    try:
        import grp
        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


def permitted(st, uid, gids, want):
    """Whether uid (with gids) may `want` ('r' or 'x') the inode of stat `st`, by its mode bits (ACLs aside)."""
    if uid == 0:
        return want == 'r' or bool(st.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)) or stat.S_ISDIR(st.st_mode)
    bits = {'r': (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH), 'x': (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)}[want]
    if st.st_uid == uid:
        return bool(st.st_mode & bits[0])
    if st.st_gid in gids:
        return bool(st.st_mode & bits[1])
    return bool(st.st_mode & bits[2])


def readable_by(path, ident):
    """-> (readable, why not): the file and every directory above it, as `ident` would open it."""
    parts = os.path.abspath(path).split(os.sep)
    for i in range(1, len(parts) - 1):
        directory = os.sep + os.path.join(*parts[1:i + 1]) if i > 0 else os.sep
        try:
            st = os.stat(directory)
        except (IOError, OSError):
            continue
        if not permitted(st, ident['uid'], ident['gids'], 'x'):
            return False, 'directory %s (mode %04o, owner %s, group %s) is not searchable by %s' % (
                directory, stat.S_IMODE(st.st_mode), _user_name(st.st_uid), _group_name(st.st_gid), ident['name'])
    st = os.stat(path)
    if not permitted(st, ident['uid'], ident['gids'], 'r'):
        return False, '%s (mode %04o, owner %s, group %s) is not readable by %s (uid %d)' % (
            path, stat.S_IMODE(st.st_mode), _user_name(st.st_uid), _group_name(st.st_gid), ident['name'], ident['uid'])
    if ident['uid'] == os.geteuid() and not os.access(path, os.R_OK):   # ACLs, read-only mounts, LSMs
        return False, '%s is not readable by %s (uid %d): access(2) says no' % (path, ident['name'], ident['uid'])
    return True, None


def credentials_shape(text):
    """The shape of a credentials JSON text: never its values, except `type` when it is a known one."""
    out = {'json_error': None, 'json_kind': None, 'type': None, 'keys_missing': [], 'keys_empty': [], 'key_names': [],
           'private_key_pem': None}
    try:
        data = json.loads(text)
    except ValueError as e:
        out['json_error'] = 'not valid JSON (%s)' % (e.msg if hasattr(e, 'msg') else e.__class__.__name__)
        if hasattr(e, 'lineno'):
            out['json_error'] = 'not valid JSON (%s at line %d, column %d)' % (e.msg, e.lineno, e.colno)
        return out
    out['json_kind'] = type(data).__name__
    if not isinstance(data, dict):
        out['json_error'] = 'a JSON %s, not an object' % out['json_kind']
        return out
    out['key_names'] = sorted(k for k in data if isinstance(k, str) and re.match(r'^[A-Za-z_][\w-]{0,40}$', k))
    out['keys_missing'] = [k for k in REQUIRED_KEYS if k not in data]
    out['keys_empty'] = [k for k in REQUIRED_KEYS if k in data and not data[k]]
    kind = data.get('type')
    out['type'] = kind if kind in KNOWN_TYPES else (None if kind is None else '(unknown)')
    key = data.get('private_key')
    out['private_key_pem'] = isinstance(key, str) and bool(
        re.search(r'-----BEGIN [A-Z ]*PRIVATE KEY-----\s.+-----END [A-Z ]*PRIVATE KEY-----', key, re.S))
    return out


def gcp_facts(json_var, env, env_source, chdir, master, psutil):
    """Google credentials as the service would load them: the file GOOGLE_APPLICATION_CREDENTIALS names,
    or the JSON held by the variable doctor_gcp_credentials_env names. Shape only, never contents."""
    out = {'mode': None, 'var': None, 'env_source': env_source, 'path': None, 'as_set': None, 'exists': None,
           'is_file': None, 'file_mode': None, 'owner': None, 'group': None, 'size': None, 'service_user': None,
           'service_can_read': None, 'unreadable_reason': None, 'prober_can_read': None, 'shape': None,
           'on_google_cloud': _on_google_cloud(env), 'uses_google': None}
    value = None
    if json_var:
        out['var'] = json_var
        value = env.get(json_var)
        if value is not None and not value.strip().startswith('{') and os.path.isabs(value.strip()):
            out['mode'] = 'file'            # the variable holds a path after all
        elif value is not None:
            out['mode'] = 'env_json'
            out['shape'] = credentials_shape(value)
            return out
        else:
            out['mode'] = 'env_json_unset'
    elif env.get('GOOGLE_APPLICATION_CREDENTIALS', '').strip():
        out['var'] = 'GOOGLE_APPLICATION_CREDENTIALS'
        value = env['GOOGLE_APPLICATION_CREDENTIALS']
        out['mode'] = 'file'
    if out['mode'] != 'file':
        out['uses_google'] = google_reference(chdir)
        return out
    as_set = value.strip()
    path = as_set if os.path.isabs(as_set) else os.path.normpath(os.path.join(chdir, as_set))
    out.update(as_set=as_set, path=path, exists=os.path.exists(path), is_file=os.path.isfile(path))
    ident = _service_identity(master, psutil)
    out['service_user'] = {'name': ident['name'], 'uid': ident['uid'], 'who': ident['who']}
    if not out['is_file']:
        return out
    st = os.stat(path)
    out.update(file_mode='%04o' % stat.S_IMODE(st.st_mode), owner=_user_name(st.st_uid), group=_group_name(st.st_gid),
               size=st.st_size)
    out['service_can_read'], out['unreadable_reason'] = readable_by(path, ident)
    # The path the service's variable names: a symlink to the key file is usual (secrets mounts).
    done = safe_read.read_bytes(path, CREDENTIALS_MAX, follow=True)
    out['prober_can_read'] = done.data is not None
    if done.data is None:
        out['prober_error'] = done.error
        return out
    raw = done.data
    if done.truncated:
        out['shape'] = {'json_error': 'larger than %d bytes: not a key file' % CREDENTIALS_MAX, 'keys_missing': [],
                        'keys_empty': [], 'key_names': [], 'type': None, 'json_kind': None, 'private_key_pem': None}
        return out
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError:
        out['shape'] = {'json_error': 'not UTF-8 text', 'keys_missing': [], 'keys_empty': [], 'key_names': [], 'type': None,
                        'json_kind': None, 'private_key_pem': None}
        return out
    out['shape'] = credentials_shape(text)
    return out


def _on_google_cloud(env):
    """On GCE/GKE/Cloud Run the metadata server lends the libraries a service account: no file needed."""
    if env.get('K_SERVICE') or env.get('GCE_METADATA_HOST'):
        return True
    return 'Google' in (safe_read.read_text('/sys/class/dmi/id/product_name', 4096, follow=True).data or '')


def google_reference(chdir):
    """The first place in the app's own files (not its venv) that uses Google Cloud -> dict or None."""
    scanned = 0
    for root, dirs, files in os.walk(chdir):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.') and d not in SKIP_DIRS
                         and not os.path.exists(os.path.join(root, d, 'pyvenv.cfg')))
        for name in sorted(files):
            if not (name.endswith('.py') or name in ('requirements.txt', 'pyproject.toml', 'setup.cfg', 'Pipfile')
                    or (name.startswith('requirements') and name.endswith('.txt'))):
                continue
            scanned += 1
            if scanned > SCAN_FILES_MAX:
                return {'found': False, 'files_scanned': scanned - 1, 'truncated': True}
            full = os.path.join(root, name)
            text = safe_read.read_text(full, SCAN_BYTES_MAX, follow=True).data   # a FIFO or device: skipped
            if text is None:
                continue
            match = GOOGLE_REFERENCE.search(text)
            if match:
                line = text.count('\n', 0, match.start()) + 1
                return {'found': True, 'file': full, 'line': line, 'what': match.group(1), 'files_scanned': scanned}
    return {'found': False, 'files_scanned': scanned, 'truncated': False}
