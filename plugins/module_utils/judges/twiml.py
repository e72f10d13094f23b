# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The TwiML webhook of the voice layer (see judges/voice.py), and the webhook texts both share.

Twilio's <Stream> rules (docs/facts.md, "TwiML <Stream>"): <Start><Stream> forks the call's audio one way and
Twilio goes on with the next verb; <Connect><Stream> is two-way and the verbs after it run only once the app
closes the stream. Either needs an absolute wss:// url without a query string; track is inbound_track,
outbound_track or both_tracks under <Start>, only inbound_track under <Connect> (31941).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import twilio

TABLE = object()   # "the Twilio error of the cause table"
# Problems of the stream URL (twilio.check_stream_url kinds) -> cause id, Twilio error, severity.
URL_KINDS = {
    'missing': ('twiml_invalid', 31923, 'fail'),
    'malformed': ('twiml_invalid', 31923, 'fail'),
    'relative': ('twiml_invalid', None, 'fail'),
    'scheme': ('twiml_invalid', 31922, 'fail'),
    'double_slash': ('twiml_double_slash', 31923, 'fail'),
    'path': ('twiml_invalid', 31920, 'fail'),
    'host': ('twiml_invalid', None, 'fail'),
    'query': ('twiml_invalid', None, 'warn'),
    # Another public host: valid TwiML, the stream is served there (the voice judge says the round trip is not run).
    'elsewhere': (None, None, 'note'),
}
# What to change for each problem of the TwiML around the url (twilio.check_stream_twiml kinds).
RULE_FIXES = {
    'track': 'on <Connect><Stream> drop track or set it to inbound_track (two-way streams carry the caller only); on '
             '<Start><Stream> use inbound_track, outbound_track or both_tracks',
    'start_last': 'put the call\'s next verb after </Start> (<Say>, <Dial>, <Pause length="...">, <Connect>, ...): '
                  'a <Start> stream lives only as long as the call does',
    'after_connect': 'move those verbs before <Connect>, or close the WebSocket from the app when Twilio should go on '
                     'with them',
    'parameter': 'give every <Parameter> both a name and a value',
}


def cause(layer, cause_id, evidence, twilio_error=TABLE, severity=None, **values):
    refs = None if twilio_error is TABLE else {'twilio_error': twilio_error}
    layer.cause(cause_id, evidence, severity=severity, refs=refs, **values)


def request_text(r):
    text = '%s %s (Host: %s' % (r['method'], r['url'], r['host_header'])
    if r.get('forwarded_proto'):
        text += ', X-Forwarded-Proto: %s' % r['forwarded_proto']
    if r.get('signed_url'):
        text += ', X-Twilio-Signature over %s' % r['signed_url']
    return text + ')'


def answer_text(r):
    if r.get('error'):
        return r['error']
    text = '%s %s' % (r['status'], r.get('reason') or '')
    if r.get('body_bytes'):
        text += ', %d bytes: %r' % (r['body_bytes'], (r.get('body_head') or '')[:160])
    else:
        text += ', empty body'
    return text


def expected_url(voice):
    base = voice.get('public_base')
    return twilio.expected_stream_url(base, voice['paths']['ws']) if base else 'wss://PUBLIC_HOST%s' % voice['paths']['ws']


def _expected_twiml(voice, verb):
    if verb == 'Start':
        return '<Start><Stream url="%s"/></Start> followed by the call\'s next verb' % expected_url(voice)
    return '<Connect><Stream url="%s"/></Connect>' % expected_url(voice)


def _curl(voice, path, fields='CallSid=CA00000000000000000000000000000000'):
    return 'curl -sS -i -X POST -d %s %s%s' % (fields, voice['local_base'], path)


def judge_twiml(voice, layer):
    """The 'TwiML webhook' check: the webhook's answer, then its <Stream> by Twilio's rules."""
    twiml = voice['twiml']
    path = voice['paths']['incoming_call']
    request = request_text(twiml)
    parsed = twiml.get('parsed') or {}
    values = {'path': path, 'expected_url': expected_url(voice),
              'expected_twiml': _expected_twiml(voice, parsed.get('verb') or 'Connect')}
    if twiml.get('error') or twiml['status'] not in (200, 401, 403):
        answer = answer_text(twiml)
        layer.check('TwiML webhook', 'fail', '%s -> %s' % (request, answer))
        fix = ('it answered %s: read the traceback in the gunicorn log around this POST and reproduce it with: %s'
               % (answer[:80], _curl(voice, path))) if twiml['status'] else \
            'it did not answer (%s): see the process and boot layers' % twiml['error']
        cause(layer, 'twiml_invalid', ['%s -> %s' % (request, answer),
                                       'a real call fails before any stream: Twilio error 11200 (HTTP retrieval failure)'],
              twilio_error=11200, fix=fix, **values)
        return
    if twiml['status'] in (401, 403):
        _judge_refused(voice, layer, twiml, request, values)
        return
    if not parsed.get('ok'):
        error = parsed.get('error') or 'no TwiML'
        layer.check('TwiML webhook', 'fail', '%s -> 200, %s' % (request, error))
        not_xml = error.startswith('not XML')
        cause(layer, 'twiml_invalid', ['%s -> 200 %s: %s' % (request, twiml.get('content_type'), error),
                                       'body: %r' % (twiml.get('body_head') or '')[:200]],
              twilio_error=12100 if not_xml else None,
              fix='return the XML document itself (mimetype text/xml), not %s' % (
                  'HTML or JSON' if not_xml else 'other verbs only'), **values)
        return
    _judge_stream(voice, layer, request, parsed, values)


def _judge_refused(voice, layer, twiml, request, values):
    answer = answer_text(twiml)
    if not twiml.get('signed_url'):
        layer.check('TwiML webhook', 'skip', '%s -> %s: the app wants a Twilio signature; set '
                    'doctor_twilio_auth_token (kept out of every output) to check its TwiML' % (request, answer))
        return
    layer.check('TwiML webhook', 'fail', '%s -> %s' % (request, answer))
    fix = ('the app rejects the X-Twilio-Signature Twilio computes over %s. If it validates against request.url, '
           'behind a TLS proxy it sees http://...: wrap the app in werkzeug ProxyFix(app.wsgi_app, x_proto=1, '
           'x_host=1) or validate against PUBLIC_BASE_URL + path; and check that doctor_twilio_auth_token is '
           "the account's current auth token" % twiml['signed_url'])
    cause(layer, 'twiml_invalid', ['%s -> %s' % (request, answer),
                                   'a real, signed call is refused the same way: Twilio error 11200'],
          twilio_error=11200, fix=fix, **values)


def _stream_text(stream):
    """<Start><Stream url="..." track="..."> and what the call does around it, for the evidence."""
    attrs = ' url="%s"' % stream['url'] + (' track="%s"' % stream['track'] if stream.get('track') else '')
    text = '<%s><Stream%s>' % (stream['verb'], attrs)
    after = stream.get('verbs_after') or []
    if stream['verb'] == 'Start':
        text += ', a one-way fork of the call audio%s' % (
            (', then %s' % ', '.join('<%s>' % v for v in after)) if after else '')
    else:
        text += ', a two-way stream'
    return text


def _problems(voice, stream):
    """URL and TwiML-rule problems of `stream` in one shape: dict(kind, detail, cause, code, severity, fix)."""
    found = []
    for p in twilio.check_stream_url(stream['url'], voice.get('public_base'), voice['paths']['ws']):
        cause_id, code, severity = URL_KINDS[p['kind']]
        found.append(dict(p, cause=cause_id, code=code, severity=severity, fix=_url_fix(voice, p)))
    for p in twilio.check_stream_twiml(stream):
        found.append(dict(p, cause='twiml_invalid', code=p['twilio_error'], fix=RULE_FIXES[p['kind']]))
    return found


def _judge_stream(voice, layer, request, parsed, values):
    """The <Stream> of a valid TwiML answer: its url against the public base URL and the WebSocket path, and the
    TwiML around it by Twilio's rules."""
    stream = parsed['streams'][0]
    url = stream['url']
    problems = _problems(voice, stream)
    notes = [p['detail'] for p in problems if p['severity'] == 'note']
    problems = [p for p in problems if p['severity'] != 'note']
    extra = ['note: %s' % n for n in notes]
    if stream['parameters']:
        extra.append('custom parameters %s' % ', '.join(str(n) for n in stream['parameters']))
    if len(parsed['streams']) > 1:
        extra.append('note: %d <Stream> elements, only the first was checked' % len(parsed['streams']))
    detail = '%s -> 200, %s%s' % (request, _stream_text(stream), ''.join('; ' + e for e in extra))
    if not problems:
        match = 'matches %s + %s' % (voice['public_base']['clean'], voice['paths']['ws']) if voice.get('public_base') else \
            'host not checked: no public base URL known'
        match = 'valid: Twilio streams to any wss:// host' if notes else match
        layer.check('TwiML webhook', 'pass', '%s (%s)' % (detail, match))
        return
    worst = 'fail' if any(p['severity'] == 'fail' for p in problems) else 'warn'
    layer.check('TwiML webhook', worst, '%s: %s' % (detail, '; '.join(p['detail'] for p in problems)))
    for cause_id in ('twiml_double_slash', 'twiml_invalid'):
        found = [p for p in problems if p['cause'] == cause_id]
        if not found:
            continue
        severity = 'fail' if any(p['severity'] == 'fail' for p in found) else 'warn'
        code = next((p['code'] for p in found if p['severity'] == severity and p['code']), None)
        evidence = ['%s returned %s' % (request, _stream_text(stream))] + [p['detail'] for p in found]
        if code:
            evidence.append('a real call shows Twilio error %d' % code)
        if cause_id == 'twiml_double_slash':
            cause(layer, cause_id, evidence, twilio_error=code, fix=_double_slash_fix(voice, layer.values.get('env_where')),
                  stream_url=url.split('?')[0], **values)
        else:
            cause(layer, cause_id, evidence, twilio_error=code, severity=severity,
                  fix='; '.join(p['fix'] for p in found), **values)


def _double_slash_fix(voice, where):
    ws_path = voice['paths']['ws']
    raw = voice.get('env_public_base_url') or voice.get('public_base_url')
    join = "base.rstrip('/') + '%s'" % ws_path
    if raw and raw.endswith('/'):
        return ('Strip the trailing / of PUBLIC_BASE_URL (now %s; set %s in %s), and build the URL in the code as %s '
                'so a trailing / can never double it again.' % (raw, raw.rstrip('/'), where, join))
    return 'The code that builds the TwiML doubles the /: build the URL as %s.' % join


def _url_fix(voice, problem):
    kind = problem['kind']
    if kind == 'scheme':
        return ('build the URL with wss:// (https -> wss; PUBLIC_BASE_URL must be an https:// URL, Twilio never '
                'connects to ws://)')
    if kind == 'host':
        return ('build the URL from PUBLIC_BASE_URL (%s), not from the request\'s Host header or a hard-coded host'
                % voice['public_base']['clean'])
    if kind == 'path':
        return ('point it at the path the WebSocket is served on, or set doctor_ws_path to the path the app really '
                'serves')
    if kind == 'query':
        return ('move the query string into <Parameter name="..." value="..."/> elements inside <Stream>; the app '
                'reads them from start.customParameters')
    if kind == 'relative':
        return 'write the absolute URL, %s (PUBLIC_BASE_URL with https -> wss, then the path)' % expected_url(voice)
    return 'emit an absolute wss:// URL with a host'
