# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The voice layer of the verdict: facts['voice'] -> checks and causes (see verdict.Layer).

Would a Twilio call work (runbook section 5)? The TwiML webhook, the stream status callback, the
media-stream WebSocket (handshake and a one-second call) and the Google credentials. Each cause names
the Twilio error a real call shows: the cause table's code, or a more exact one for this instance
(12100 TwiML that is not XML, 11200 a webhook that fails, 31901 a handshake that never answers).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import gunicorn_settings, twilio
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import twiml

_cause = twiml.cause

HANDSHAKE_CHECK = ('curl -i -N --max-time 3 -H "Connection: Upgrade" -H "Upgrade: websocket" -H "Sec-WebSocket-Version: 13" '
                   '-H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" -H "Sec-WebSocket-Protocol: audio.twilio.com" '
                   'http://127.0.0.1:{port}{path}')


def judge(facts, layer):
    """Add the voice layer's checks and causes to `layer`."""
    voice = facts.get('voice')
    if voice is None:
        if not (facts.get('inputs') or {}).get('voice_checks', True):
            layer.check('voice checks', 'skip', 'doctor_voice_checks is false: webhooks, media stream and Google '
                        'credentials were not checked')
        else:
            layer.check('voice checks', 'skip', 'not probed in this run')
        return
    _judge_base(voice, layer)
    if voice.get('http_skipped'):
        for name in ('TwiML webhook', 'status callback', 'WebSocket handshake', 'media round trip'):
            layer.check(name, 'skip', voice['http_skipped'])
    else:
        twiml.judge_twiml(voice, layer)
        _judge_status_callback(voice, layer)
        _judge_websocket(voice, layer)
    _judge_gcp(voice, layer)


# --- public base URL ------------------------------------------------------------------------------------
def _judge_base(voice, layer):
    base = voice.get('public_base')
    if not base:
        layer.check('public base URL', 'pass', 'note: none known (no doctor_public_base_url, no PUBLIC_BASE_URL in '
                    '%s): the stream URL\'s host is not checked and the external layer has no URL to probe'
                    % voice['env_source'])
        return
    notes = []
    if base['scheme'] not in ('https', 'wss'):
        notes.append('%s:// - Twilio needs https webhooks and a wss:// stream' % base['scheme'])
    if base['trailing_slash']:
        notes.append('ends with "/": the app must strip it before joining paths')
    layer.check('public base URL', 'pass', '%s from %s%s' % (voice['public_base_url'], voice['public_base_url_source'],
                                                             ('; note: ' + '; '.join(notes)) if notes else ''))


# --- status callback ------------------------------------------------------------------------------------
def _judge_status_callback(voice, layer):
    s = voice['status_callback']
    if s.get('skipped'):
        layer.check('status callback', 'skip', s['skipped'])
        return
    path = voice['paths']['stream_status']
    request = twiml.request_text(s)
    answer = twiml.answer_text(s)
    if s['status'] == 204 and not s.get('body_bytes'):
        layer.check('status callback', 'pass', '%s -> %s' % (request, answer))
        return
    layer.check('status callback', 'warn', '%s -> %s' % (request, answer))
    evidence = ['%s with StreamEvent=stream-started -> %s' % (request, answer)]
    code = None
    if s.get('error') or (s['status'] or 0) >= 400:
        code = 11200
        evidence.append('Twilio logs error 11200 for every status callback of every call')
    answer = s['error'] if s.get('error') else '%s %s with %d bytes' % (s['status'], s.get('reason') or '',
                                                                        s.get('body_bytes') or 0)
    _cause(layer, 'status_callback_not_204', evidence, twilio_error=code, path=path, answer=answer.replace('?', ''))


# --- WebSocket ------------------------------------------------------------------------------------------
def _path_source(voice):
    """Where the WebSocket path came from, when the TwiML said something about it."""
    stream = voice.get('stream') or {}
    if stream.get('other_host') and not stream.get('from_twiml'):
        return '; the TwiML streams to %s, not to this app: this is doctor_ws_path' % stream['other_host']
    if stream.get('other_host'):
        return '; the path of the TwiML\'s <Stream url>, on %s: a name of this host' % stream['other_host']
    if stream.get('from_twiml'):
        return '; the path of the TwiML\'s <Stream url>'
    return ''


def _judge_websocket(voice, layer):
    websocket = voice['websocket']
    ws_path = voice['paths']['ws']
    port = voice['local_base'].rsplit(':', 1)[1]
    check = HANDSHAKE_CHECK.format(port=port, path=ws_path)
    values = {'ws_path': ws_path, 'check': check}
    if websocket.get('elsewhere'):
        layer.check('WebSocket handshake', 'warn', 'the TwiML streams to %s, another host than this service\'s public '
                    'base URL: the media WebSocket is served elsewhere and is not tried from here; check that host '
                    'answers the upgrade with Sec-WebSocket-Protocol: audio.twilio.com' % websocket['elsewhere'])
        layer.check('media round trip', 'skip', 'not run against this app: the media WebSocket is served elsewhere '
                    '(%s)' % websocket['elsewhere'])
        return
    if websocket.get('skipped'):
        if websocket.get('install'):
            layer.check('WebSocket handshake', 'warn', '%s: install it with: %s' % (websocket['skipped'], websocket['install']))
        else:
            layer.check('WebSocket handshake', 'skip', websocket['skipped'])
        layer.check('media round trip', 'skip', 'no handshake')
        return
    request = 'GET %s (Host: %s, Upgrade: websocket, Sec-WebSocket-Protocol: audio.twilio.com%s)' % (
        websocket['url'], websocket['host_header'], _path_source(voice))
    headers = websocket.get('headers') or {}
    if websocket.get('status') is None:
        timeout = 'within' in (websocket.get('error') or '')
        layer.check('WebSocket handshake', 'fail', '%s -> %s' % (request, websocket.get('error') or websocket.get('raw_error')))
        _cause(layer, 'ws_handshake_failed', ['%s -> %s' % (request, websocket.get('error') or websocket.get('raw_error'))],
               twilio_error=31901 if timeout else twiml.TABLE,
               fix='The endpoint does not answer the upgrade at all: see the layers above.', **values)
        layer.check('media round trip', 'skip', 'no handshake')
        return
    if websocket['status'] != 101:
        answer = '%s %s' % (websocket['status'], websocket.get('reason') or '')
        if websocket.get('body_head'):
            answer += ', body %r' % websocket['body_head'][:120]
        hint = {404: 'no route at %s' % ws_path,
                400: 'a plain HTTP route answers an upgrade request with 400: no WebSocket endpoint at %s' % ws_path,
                405: 'a plain HTTP route (GET not allowed) at %s' % ws_path}.get(websocket['status'],
                                                                                 'not a WebSocket endpoint')
        layer.check('WebSocket handshake', 'fail', '%s -> %s' % (request, answer))
        _cause(layer, 'ws_handshake_failed', ['%s -> %s, not 101 Switching Protocols' % (request, answer), hint,
                                              'a real call shows Twilio error 31920 (WebSocket handshake error)'],
               fix='It answers %s now.' % answer.split(',')[0], **values)
        layer.check('media round trip', 'skip', 'no handshake')
        return
    wrong = []
    if (headers.get('upgrade') or '').lower() != 'websocket':
        wrong.append('Upgrade: %r (must be websocket)' % headers.get('upgrade'))
    if 'upgrade' not in (headers.get('connection') or '').lower():
        wrong.append('Connection: %r (must contain Upgrade)' % headers.get('connection'))
    if websocket.get('accept_valid') is False:
        wrong.append('Sec-WebSocket-Accept %r is not %r, the value RFC 6455 derives from our Sec-WebSocket-Key' % (
            headers.get('sec-websocket-accept'), websocket.get('accept_expected')))
    if wrong:
        layer.check('WebSocket handshake', 'fail', '%s -> 101 with %s' % (request, '; '.join(wrong)))
        _cause(layer, 'ws_handshake_failed', ['%s -> 101 Switching Protocols, but %s' % (request, '; '.join(wrong)),
                                              'the client library refused it: %s' % websocket.get('error')],
               fix='Its 101 answer is not a valid WebSocket handshake: use a maintained WebSocket server '
                   '(flask-sock/simple-websocket) instead of a hand-made upgrade.', **values)
        layer.check('media round trip', 'skip', 'no valid handshake')
        return
    subprotocol = websocket.get('subprotocol')
    if subprotocol != twilio.SUBPROTOCOL:
        echoed = 'no Sec-WebSocket-Protocol header' if not subprotocol else 'Sec-WebSocket-Protocol %r' % subprotocol
        layer.check('WebSocket handshake', 'fail', '%s -> 101, Sec-WebSocket-Accept valid, but %s' % (request, echoed))
        _cause(layer, 'ws_subprotocol_missing', [
            '%s -> 101 Switching Protocols with %s: the offered audio.twilio.com is not echoed' % (request, echoed),
            'Twilio drops such a handshake: error 31920'], **values)
    else:
        layer.check('WebSocket handshake', 'pass', '%s -> 101, Sec-WebSocket-Accept valid for our key, '
                    'Sec-WebSocket-Protocol audio.twilio.com echoed (%s)' % (request, websocket.get('library')))
    _judge_round_trip(voice, websocket, layer, twilio_reaches=subprotocol == twilio.SUBPROTOCOL)


def _sync_note(voice, websocket):
    """The capacity note: how many calls the workers hold at once (gunicorn_settings.concurrency), for the worker
    classes where each call holds a worker or a thread."""
    worker = dict(voice.get('worker') or {})
    worker.setdefault('worker_class', 'sync')
    threaded = gunicorn_settings.runs_as_gthread(worker)
    if worker['worker_class'] != 'sync' and not threaded:
        return ''
    calls, how = gunicorn_settings.concurrency(dict(worker, workers=worker.get('workers') or 1))
    held = websocket.get('held_seconds', '?')
    if threaded:
        note = '; note: under %s the call held one of %d threads for %s s' % (how, calls, held)
    else:
        note = '; note: under -k sync the call held one of %d worker(s) for %s s' % (calls, held)
    if calls == 1:
        note += ' (the only one: /healthz and every other request waited meanwhile)'
    return note + ', and at most %d call(s) can be up at once' % calls


def _judge_round_trip(voice, websocket, layer, twilio_reaches):
    round_trip = websocket.get('round_trip')
    if round_trip is None:
        layer.check('media round trip', 'skip', 'no call was made')
        return
    stream, back = _call_text(round_trip)
    unreached = '' if twilio_reaches else ' (a real call would not get this far: the subprotocol is missing)'
    if round_trip.get('one_way'):
        _judge_one_way(voice, websocket, layer, stream, back, unreached)
        return
    problems = round_trip.get('problems') or []
    if round_trip.get('receive_error'):
        problems = problems + [{'kind': 'frame', 'detail': 'the client gave up on a frame: %s' % round_trip['receive_error'],
                                'index': None, 'at_ms': None}]
    if round_trip.get('out_of_time') and not problems:
        _judge_slow_call(voice, websocket, layer, stream, back)
        return
    if round_trip.get('stopped_reading') and not round_trip.get('out_of_time'):
        # a flood or a giant frame: what matters first, whatever the frames were
        problems = [{'kind': 'flood', 'detail': 'the doctor stopped reading: %s' % round_trip['stopped_reading'],
                     'index': None, 'at_ms': None}] + problems
    if problems:
        first = problems[0]
        where = 'frame %s at %s ms' % (first['index'], first['at_ms']) if first.get('index') else 'a frame'
        layer.check('media round trip', 'fail', '%s; %s; first bad: %s: %s%s' % (
            stream, back, where, first['detail'], unreached))
        evidence = ['%s: %s (on %s, streamSid %s)' % (where, first['detail'], websocket['url'], round_trip['stream_sid']),
                    '%d of %d frames the app sent during the call were bad; %s' % (
                        round_trip['problem_count'] or len(problems), round_trip['received'], back)]
        evidence += ['frame %s at %s ms: %s' % (p['index'], p['at_ms'], p['detail']) for p in problems[1:3] if p.get('index')]
        tx = voice.get('media_tx') or {}
        if tx.get('count'):
            evidence.append('the app logged %d MEDIA_TX line(s) meanwhile, e.g. %s' % (tx['count'], tx['first']))
        evidence.append('Twilio closes the stream at the first such message: error 31924')
        _cause(layer, 'media_format_invalid', evidence, fix=_media_fix(problems))
        _judge_media_tx(voice, round_trip, layer)
        return
    notes = []
    closed = round_trip.get('closed_by_app')
    if closed and closed.get('before_stop'):
        reason = ', %r' % closed['reason'] if closed.get('reason') else ''
        layer.check('media round trip', 'warn', '%s; the app closed the stream %s ms into the call (close code %s%s) '
                    'before Twilio\'s stop; %s%s' % (stream, closed['at_ms'], closed['code'], reason, back,
                                                     _sync_note(voice, websocket)))
        _judge_media_tx(voice, round_trip, layer)
        return
    media = round_trip['events'].get('media', 0)
    if media:
        notes.append('all %d media payloads 160 bytes of mu-law with streamSid %s, the first %s ms after the call '
                     'started' % (media, round_trip['stream_sid'], round_trip['first_media_ms']))
    else:
        notes.append('note: no audio came back in %d ms (fine for a listen-only app; a speaking one leaves callers '
                     'in silence)' % (round_trip.get('stop_at_ms') or 0))
    if round_trip.get('mark_echoed'):
        notes.append('mark echoed')
    if round_trip.get('after_stop'):
        notes.append('note: %d frame(s) after stop are dropped by Twilio' % round_trip['after_stop'])
    layer.check('media round trip', 'pass', '%s; %s; %s%s%s' % (
        stream, back, '; '.join(notes), _sync_note(voice, websocket), unreached))
    _judge_media_tx(voice, round_trip, layer)


def _judge_slow_call(voice, websocket, layer, stream, back):
    """The call ran past its bound with every frame the app sent valid: slow, not wrong. On a loaded host the bound
    was scaled already (probes/voice.bounds_scale); what is left is a warning to look at the host's load or the
    app's CPU, not a cause: nothing the app sent breaks a Twilio call."""
    bounds = voice.get('bounds') or {}
    layer.check('media round trip', 'warn', '%s; %s: the doctor stopped waiting (its bounds times %s here: %s); every '
                'frame that came back was valid; %s; note: the host or the app is slow now: look at the load and the '
                'worker\'s CPU, then diagnose again%s' % (
                    stream, websocket['round_trip']['stopped_reading'], bounds.get('scale', 1), bounds.get('why', '?'),
                    back, _sync_note(voice, websocket)))


def _call_text(round_trip):
    """-> (what the doctor sent as Twilio, what came back while the call was open), for the evidence."""
    pace = round_trip.get('pace') or 1
    paced = '%g ms' % round_trip.get('frame_interval_ms', twilio.FRAME_MS) + ('' if pace == 1 else ', %gx real time' % pace)
    tracks = round_trip.get('tracks') or ['inbound']
    if round_trip.get('one_way'):
        shape = 'a one-way'
        start = 'start tracks %s audio/x-mulaw 8000 Hz mono' % '+'.join(tracks)
        tail = 'stop'
    else:
        shape, start, tail = 'a', 'start audio/x-mulaw 8000 Hz mono', 'mark, stop'
    stream = '%s %d ms call (connected, %s, %d x 160-byte media paced at %s, max lag %s ms, %s)' % (
        shape, round_trip.get('stop_at_ms') or 0, start, round_trip['sent_media'], paced, round_trip['max_send_lag_ms'],
        tail)
    events = ', '.join('%s %d' % (k, n) for k, n in sorted(round_trip['events'].items())) or 'nothing'
    sizes = ', '.join('%s bytes x %d' % (k, n) for k, n in sorted(round_trip['media_sizes'].items(), key=lambda i: int(i[0])))
    return stream, 'back while the call was open: %s%s' % (events, ' (media sizes: %s)' % sizes if sizes else '')


def _judge_one_way(voice, websocket, layer, stream, back, unreached):
    """A <Start> stream: Twilio only sends; the app reads. Nothing need come back, and what does is never played."""
    round_trip = websocket['round_trip']
    closed = round_trip.get('closed_by_app')
    if round_trip.get('stopped_reading'):
        layer.check('media round trip', 'warn', '%s; the doctor stopped reading: %s; %s%s' % (
            stream, round_trip['stopped_reading'], back, unreached))
        return
    if closed and closed.get('before_stop'):
        reason = ', %r' % closed['reason'] if closed.get('reason') else ''
        layer.check('media round trip', 'warn', '%s; the app closed the stream %s ms into the call (close code %s%s) '
                    'before Twilio\'s stop: the rest of the call is not heard; %s%s' % (
                        stream, closed['at_ms'], closed['code'], reason, back, unreached))
        return
    received = round_trip.get('received') or 0
    if received:
        note = ('note: the app sent %d frame(s) on a one-way stream: Twilio plays none of them, and its error 31924 '
                'page asks a <Start> stream\'s server to send nothing back' % received)
    else:
        note = 'nothing came back, as a one-way stream expects: the app listens'
    layer.check('media round trip', 'pass',
                '%s; %s; %s%s%s' % (stream, back, note, _sync_note(voice, websocket), unreached))
    layer.check('MEDIA_TX in the log', 'skip', 'a one-way <Start> stream plays no audio from the app')


def _media_fix(problems):
    kinds = [p['kind'] for p in problems]
    detail = problems[0]['detail']
    if 'flood' in kinds:
        return ('send one media message per 20 ms of audio (160 bytes of mu-law each) and a mark or clear only '
                'when needed: Twilio, like the doctor, does not read an endless or giant stream.')
    if 'payload' in kinds:
        if '16-bit PCM' in detail:
            return ('the app sends 16-bit PCM: resample it to 8 kHz mono, encode it as G.711 mu-law (audioop.lin2ulaw'
                    '(pcm, 2) before Python 3.13, or a small encoder such as AgentLocator/media.py), and send 160 bytes '
                    'per media message, one every 20 ms.')
        if 'header' in detail:
            return 'strip the WAV/AU header: send raw mu-law bytes, 160 per message.'
        return 'cut the mu-law audio into 160-byte (20 ms) frames, one per media message.'
    if 'binary' in kinds:
        return 'send JSON text frames (ws.send(json.dumps(message))), never binary frames.'
    if 'stream_sid' in kinds:
        return 'put the streamSid of the start message into every message the app sends.'
    if 'event' in kinds:
        return 'send only media, mark and clear events.'
    return 'send one JSON object per text frame.'


def _judge_media_tx(voice, round_trip, layer):
    tx = voice.get('media_tx')
    if not tx:
        return
    if tx.get('count') is None:
        layer.check('MEDIA_TX in the log', 'skip', tx.get('reason') or 'no log')
        return
    if tx['count']:
        layer.check('MEDIA_TX in the log', 'pass', '%d MEDIA_TX line(s) in %s during the call (%d name its streamSid), '
                    'e.g. %s' % (tx['count'], tx['log'], tx['with_stream_sid'], tx['first']))
        return
    media = round_trip['events'].get('media', 0)
    layer.check('MEDIA_TX in the log', 'pass', 'note: no MEDIA_TX line in %s during the call%s (runbook 5.3 looks for '
                'them as the sign that audio goes out)' % (tx['log'], ', although %d media frames came back' % media
                                                           if media else ''))


# --- Google credentials ---------------------------------------------------------------------------------
def _judge_gcp(voice, layer):
    gcp = voice['gcp']
    name = 'Google credentials'
    var = gcp.get('var')
    where = gcp['env_source']
    user = gcp.get('service_user') or {}
    mode = gcp.get('mode')
    if mode is None or mode == 'env_json_unset':
        uses = gcp.get('uses_google') or {}
        unset = ('doctor_gcp_credentials_env names %s, which %s does not set' % (var, where)) if mode else \
            'GOOGLE_APPLICATION_CREDENTIALS is not set in %s' % where
        if gcp.get('on_google_cloud'):
            layer.check(name, 'pass', '%s; on Google Cloud the metadata server lends the service account' % unset)
            return
        if uses.get('found') or mode:
            layer.check(name, 'fail', unset)
            evidence = [unset]
            if uses.get('found'):
                evidence.append('the app uses Google Cloud: %s line %d (%s)' % (uses['file'], uses['line'], uses['what']))
            _cause(layer, 'gcp_credentials_missing', evidence,
                   fix='Create a service-account key (gcloud iam service-accounts keys create KEY.json '
                       '--iam-account SA_EMAIL), install it as a file only the service user reads (chmod 0600, owned '
                       'by %s), and set GOOGLE_APPLICATION_CREDENTIALS to its path in %s%s.' % (
                           user.get('name') or 'the service user', layer.values.get('env_where'),
                           (' (or put the JSON into %s)' % var) if mode else ''),
                   check='sudo -u SERVICE_USER test -r KEY.json && echo readable')
            return
        layer.check(name, 'skip', 'none configured and none needed: %s, and none of the %d source files under the app '
                    'directory references Google Cloud%s' % (unset, uses.get('files_scanned', 0),
                                                             ' (scan capped)' if uses.get('truncated') else ''))
        return
    if mode == 'env_json':
        _judge_gcp_shape(gcp, layer, '%s is set in %s' % (var, where), 'the JSON in %s' % var,
                         check="print the key names only: python3 -c 'import json, os; print(sorted(json.loads("
                               "os.environ[\"%s\"])))' in the service's environment" % var)
        return
    path = gcp['path']
    shown = '%s points to %s%s' % (var, path, '' if gcp['as_set'] == path else ' (%r, relative to the app directory)'
                                   % gcp['as_set'])
    who = '%s (uid %s, %s)' % (user.get('name'), user.get('uid'), user.get('who'))
    check = 'sudo -u %s test -r %s && echo readable' % (user.get('name') or 'SERVICE_USER', path)
    if not gcp['exists'] or not gcp['is_file']:
        what = 'which does not exist' if not gcp['exists'] else 'which is not a regular file'
        layer.check(name, 'fail', '%s, %s' % (shown, what))
        _cause(layer, 'gcp_credentials_missing', ['%s (from %s), %s' % (shown, where, what)],
               fix='Put the service-account JSON key at %s (mode 0600, owned by %s), or point %s at the key file '
                   'that exists, in %s.' % (path, user.get('name'), var, layer.values.get('env_where')), check=check)
        return
    bits = 'mode %s, owner %s, group %s, %d bytes' % (gcp['file_mode'], gcp['owner'], gcp['group'], gcp['size'] or 0)
    facts_line = '%s (%s)' % (path, bits)
    if not gcp['service_can_read']:
        layer.check(name, 'fail', '%s; %s' % (shown, gcp['unreadable_reason']))
        _cause(layer, 'gcp_credentials_missing', ['%s (from %s); the service runs as %s' % (shown, where, who),
                                                  gcp['unreadable_reason']],
               fix='Let the service user read it: chown %s %s && chmod 0600 %s (or a group it is in, mode 0640; '
                   'every directory above needs +x for it).' % (user.get('name'), path, path), check=check)
        return
    if gcp.get('prober_can_read') is False:
        layer.check(name, 'warn', '%s: readable by %s, but this probe could not read it to check its JSON (%s): run '
                    'the diagnosis with become: true' % (facts_line, who, gcp.get('prober_error')))
        return
    _judge_gcp_shape(gcp, layer, '%s (from %s); %s' % (shown, where, bits), path,
                     check='python3 -c \'import json; print(sorted(json.load(open("%s"))))\' (prints the key names '
                           'only)' % path, prefix='%s, readable by %s' % (facts_line, who))


def _judge_gcp_shape(gcp, layer, lead, thing, check, prefix=None):
    shape = gcp.get('shape') or {}
    name = 'Google credentials'
    problems = []
    if shape.get('json_error'):
        problems.append('%s is %s' % (thing, shape['json_error']))
    elif shape.get('keys_missing') or shape.get('keys_empty'):
        if shape.get('keys_missing'):
            problems.append('%s lacks %s (keys present: %s)' % (thing, ', '.join(shape['keys_missing']),
                                                                ', '.join(shape.get('key_names') or []) or 'none'))
        if shape.get('keys_empty'):
            problems.append('%s has empty %s' % (thing, ', '.join(shape['keys_empty'])))
    elif not shape.get('private_key_pem'):
        problems.append('%s has a private_key that is not a PEM private key block' % thing)
    if problems:
        layer.check(name, 'fail', '; '.join(problems))
        _cause(layer, 'gcp_credentials_missing', [lead] + problems + [
            'Google clients fail at their first call (google.auth DefaultCredentialsError): callers hear silence'],
            fix='Replace %s with the JSON key of a service account, as downloaded from IAM (type service_account, '
                'with project_id, private_key and client_email).' % thing, check=check)
        return
    kind = shape.get('type')
    detail = '%s; a %s key with type, project_id, private_key, client_email' % (prefix or lead, kind)
    if kind != 'service_account':
        layer.check(name, 'warn', '%s; note: type is %s, the runbook expects a service_account key' % (detail, kind))
        _cause(layer, 'gcp_credentials_missing', [lead, '%s holds type %s, not service_account' % (thing, kind)],
               severity='warn', fix='Use a service-account key for the service (type service_account); a user\'s or '
                                    'another kind of credential breaks when that user or federation changes.',
               check=check)
        return
    mode = gcp.get('file_mode')
    if mode and int(mode, 8) & 0o004:
        detail += '; note: every user of the host can read it (mode %s): chmod o-r' % mode
    layer.check(name, 'pass', detail)
