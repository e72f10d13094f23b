# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The external layer of the verdict: facts['external'] -> checks and causes (see verdict.Layer).

facts['external'] is what probes/external.py saw from the controller. The layer means something
only once the service answers locally (runbook section 0): while /healthz on 127.0.0.1:$PORT is not
a stable 200 its checks are reported as not judged, so a down service gets no second, misleading
cause. When the service is up locally and the public URL fails, `external_unreachable` says which
of the runbook's two outside causes the evidence points to: a proxy, router or firewall aimed at
another port (cause 7), or a URL/name that leads to another host (cause 10), with the Twilio error
a real call would show.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.net import is_loopback
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain.twilio import SUBPROTOCOL as TWILIO_SUBPROTOCOL
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges.shared import healthz_stable

CHECK_URL, CHECK_HTTPS, CHECK_WSS = 'public URL', 'https healthz', 'wss handshake'
GATEWAY_STATUSES = (502, 503, 504)
# What Twilio reports when the media stream's wss:// connection fails this way (docs/facts.md).
TWILIO_ERRORS = {'refused': 31902, 'timeout': 31901, 'tls': 31910, 'http_status': 31920, 'no_subprotocol': 31920,
                 'bad_accept': 31920}
VERIFY_EXPIRED, VERIFY_NOT_YET_VALID = 10, 9


def judge(facts, layer):
    """Add the external layer's checks and causes to `layer`."""
    external = facts.get('external')
    if not external:
        layer.check(CHECK_URL, 'skip', 'not probed: the external checks run on the controller, in the '
                    'sre.gunicorn_doctor.report action, when a public URL is known')
        return
    if external.get('skipped'):
        layer.check(CHECK_URL, 'skip', external['skipped'])
        return
    local_ok = healthz_stable(facts)
    if external.get('url_error'):
        detail = 'PUBLIC_BASE_URL %s (from %s)' % (external['url_error'], external.get('source'))
        if not local_ok:
            layer.check(CHECK_URL, 'skip', 'not judged while the service is down locally: ' + detail)
            return
        layer.check(CHECK_URL, 'fail', detail)
        _cause(layer, [detail + ': runbook cause 10, Twilio cannot use this URL (31923 malformed URL)', _local(facts)],
               'Set PUBLIC_BASE_URL in the service environment to https://HOST[:PORT] of the public name Twilio '
               'dials (or doctor_public_base_url to check another URL).',
               'curl -sS -m 5 -i https://HOST/healthz', number=10, twilio=31923)
        return

    https, wss = external['https'], external['wss']
    if not local_ok:
        _not_judged(facts, layer, external)
        return

    _url_check(layer, external)
    for name, result in ((CHECK_HTTPS, https), (CHECK_WSS, wss)):
        if result.get('not_run'):
            layer.check(name, 'skip', 'not run: %s' % result['not_run'])
        elif result['ok']:
            layer.check(name, 'pass', _describe(result) + _pass_note(result, facts))
        else:
            layer.check(name, 'fail', _describe(result))
    failed = [r for r in (https, wss) if not r.get('not_run') and not r['ok']]
    if not failed:
        return
    primary = failed[0]
    finding = _diagnose(primary, https, wss, external, facts)
    evidence = [finding['summary']]
    evidence += ['from the controller: %s' % _describe(r) for r in failed]
    if external.get('certificate') and primary['error_class'] == 'tls':
        evidence.append(_describe_certificate(external['certificate']))
    evidence += [_where(external)[1], _local(facts)]
    _cause(layer, evidence, finding['remedy'], _external_check(external), number=finding['number'],
           twilio=_twilio_error(wss), step=finding.get('step'))


# --- the cause ----------------------------------------------------------------------------------------
def _cause(layer, evidence, remedy, check_command, number, twilio, step=None):
    # The table holds the usual case (cause 7, refused); this instance says what the evidence shows.
    refs = {'runbook_cause': number, 'twilio_error': twilio}
    if step:
        refs['runbook_step'] = step
    layer.cause('external_unreachable', evidence, refs=refs, extra=remedy, external_check=check_command)


def _twilio_error(wss):
    """The error a real call's media stream would get: what the wss:// check got."""
    if not wss or wss.get('not_run') or wss['ok']:
        return None
    return TWILIO_ERRORS.get(wss['error_class'])


def _external_check(external):
    """The runbook's "from outside" commands for this URL."""
    https, wss = external['https'], external['wss']
    private_ca = external.get('ca_bundle') if external.get('validate_certs') else None
    curl_ca = ' --cacert %s' % private_ca if private_ca else ''
    wscat_ca = ' --ca %s' % private_ca if private_ca else ''
    return 'curl -sS -m 5 -i%s %s and wscat%s -c %s -H "Sec-WebSocket-Protocol: %s" (expect 200, then 101 with ' \
           'the subprotocol echoed)' % (curl_ca, https['url'], wscat_ca, wss['url'], TWILIO_SUBPROTOCOL)


# --- what the evidence says -----------------------------------------------------------------------------
def _diagnose(r, https, wss, external, facts):
    """The failing result `r` (https first, else wss) -> dict(summary, remedy, number, step)."""
    port = facts['port']['port']
    host, public_port = external['host'], external['port']
    peer = r.get('peer') or _first_address(external, public_port)
    relation = _where(external)[0]
    cls = r['error_class']
    app = '127.0.0.1:%d' % port
    if cls == 'http_status' and r is https and r['status'] in GATEWAY_STATUSES:
        return dict(number=7, summary=(
            'runbook cause 7: the proxy at %s%s answers %d %s for %s while the app answers 200 on %s: the proxy '
            'cannot reach its upstream, so it forwards to another port or address than the app\'s $PORT=%d '
            '(which one is in the proxy\'s configuration, not visible from outside)%s' % (
                peer, _server(r), r['status'], r['reason'] or '', r['url'], app, port, _twilio_text(wss))),
            remedy='Point the proxy\'s upstream at the app\'s $PORT: forward %s to %s (nginx: proxy_pass http://%s;, '
                   'a platform router or load balancer: target port %d), then reload the proxy.' % (
                       external['base_url'], app, app, port))
    if cls == 'http_status' and r is https:
        if r['status'] and 300 <= r['status'] < 400:
            return dict(number=None, summary=(
                '%s answers %d with Location: %s: Twilio follows no redirect for the media stream%s' % (
                    r['url'], r['status'], r.get('location'), _twilio_text(wss))),
                remedy='Use the URL the redirect leads to as PUBLIC_BASE_URL, or serve %s and the media stream path '
                       'without a redirect.' % facts['inputs']['healthz_path'])
        return dict(number=7, summary=(
            'runbook cause 7: the server at %s%s answers %d %s for %s while the app answers 200 on %s: the proxy '
            'routes this name or path to another backend, or blocks it%s' % (
                peer, _server(r), r['status'], r['reason'] or '', r['url'], app, _twilio_text(wss))),
            remedy='Route %s (its server block / virtual host, every path) to %s in the proxy, with no login or IP '
                   'filter in front of the webhook and media stream paths.' % (host, app))
    if cls == 'http_status':  # https passed: only the WebSocket upgrade fails
        return dict(number=7, summary=(
            'runbook cause 7: https reaches the app through %s%s, but the WebSocket handshake gets %s instead of '
            '101: the proxy does not pass the upgrade (the app sees a plain GET and answers 400)%s' % (
                peer, _server(r), r['status'] or 'a redirect', _twilio_text(wss))),
            remedy='Let the proxy pass WebSocket upgrades on %s to %s: nginx needs proxy_http_version 1.1; '
                   'proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"; (other proxies '
                   'and platforms: enable WebSocket support for the route).' % (wss['url'], app))
    if cls == 'no_subprotocol':
        return dict(number=None, step='5.2', summary=(
            'the handshake through %s answers 101 without echoing Sec-WebSocket-Protocol: %s%s' % (
                peer, TWILIO_SUBPROTOCOL, _twilio_text(wss))),
            remedy='Accept the %s subprotocol in the app (flask-sock: list it in the "subprotocols" of '
                   'app.config["SOCK_SERVER_OPTIONS"]); if the app echoes it on %s, the proxy strips the header.' % (
                       TWILIO_SUBPROTOCOL, app))
    if cls == 'bad_accept':
        return dict(number=7, summary=(
            'runbook cause 7: the handshake through %s answers 101 with invalid Upgrade/Connection/'
            'Sec-WebSocket-Accept headers: something between the controller and the app rewrites it%s' % (
                peer, _twilio_text(wss))),
            remedy='Pass the WebSocket handshake through the proxy unchanged (no header rewriting on %s).' % wss['url'])
    if cls == 'tls':
        return _diagnose_tls(r, wss, external, facts, peer)
    if cls == 'dns':
        return dict(number=10, summary=(
            'runbook cause 10: %s does not resolve from the controller (%s): the public URL names no reachable '
            'host' % (host, external['dns']['error'])),
            remedy='Correct PUBLIC_BASE_URL (or doctor_public_base_url) to the public name of the service, or create '
                   'the DNS record of %s pointing at the server or its load balancer; Twilio resolves the same name.'
                   % host)
    if cls in ('refused', 'timeout', 'unreachable', 'reset'):
        return _diagnose_connection(r, wss, external, facts, peer, relation)
    return dict(number=None, summary='%s: %s' % (r['url'], r['error']),
                remedy='Make %s reach %s from outside the server.' % (r['url'], app))


def _diagnose_connection(r, wss, external, facts, peer, relation):
    port = facts['port']['port']
    host, public_port = external['host'], external['port']
    address = peer.rsplit(':', 1)[0] if peer.rsplit(':', 1)[-1].isdigit() else peer
    app = '127.0.0.1:%d' % port
    what = {'refused': 'refuses the connection (nothing listens there)',
            'timeout': 'gives no answer within %g s (packets dropped, or nothing speaks TLS there)' % external['timeout'],
            'unreachable': 'is unreachable (no route)',
            'reset': 'closes the connection without an answer'}[r['error_class']]
    if r['error_class'] == 'timeout' and public_port == port and external['scheme'] == 'https':
        return dict(number=7, summary=(
            'runbook cause 7: %s:%d %s: %d is the app\'s own $PORT, where gunicorn speaks plain HTTP, not TLS%s' % (
                address, public_port, what, port, _twilio_text(wss))),
            remedy='Publish the TLS proxy, not gunicorn: an https listener for %s forwarding to %s, and its port (443) '
                   'in PUBLIC_BASE_URL instead of :%d.' % (host, app, port))
    if relation == 'loopback':
        return dict(number=10, summary=(
            'runbook cause 10: %s %s a loopback address and %s:%d %s: a public URL on loopback reaches the machine '
            'that probes it, never what Twilio reaches%s' % (
                host, 'is' if _is_address(external) else 'resolves to', address, public_port, what, _twilio_text(wss))),
            remedy='Set PUBLIC_BASE_URL (doctor_public_base_url) to the public https name of the service, the one '
                   'Twilio dials, and probe 127.0.0.1:$PORT only on the server itself; if a proxy on this host should '
                   'serve port %d, it does not listen there (runbook cause 7).' % public_port)
    if relation == 'other':
        return dict(number=10, summary=(
            'runbook cause 10: %s resolves to %s, which is not one of the server\'s addresses, and %s:%d %s: the name '
            'leads to another host%s' % (host, address, address, public_port, what, _twilio_text(wss))),
            remedy='Point the DNS record of %s (or PUBLIC_BASE_URL) at the server or its load balancer; if %s is '
                   'your load balancer, it must listen on %d and forward to the server\'s $PORT=%d (runbook cause 7).'
                   % (host, address, public_port, port))
    known = relation == 'target'
    return dict(number=7, summary=(
        'runbook cause 7: %s:%d %s%s, while the app answers on %s: no proxy, router or firewall rule forwards public '
        'port %d to $PORT=%d%s' % (
            address, public_port, what, ' although it is the server\'s address' if known else '', app, public_port, port,
            _twilio_text(wss))),
        remedy='Make the proxy (or platform router) listen on %d for %s and forward to %s, and open %d in the firewall; '
               'on the server, ss -ltnp | grep :%d shows who listens.%s' % (
                   public_port, host, app, public_port, public_port,
                   '' if known else ' If %s is not your server, the name leads to another host (runbook cause 10).'
                   % address))


def _diagnose_tls(r, wss, external, facts, peer):
    port = facts['port']['port']
    host = external['host']
    cert = external.get('certificate') or {}
    kind = r.get('tls_kind')
    app = '127.0.0.1:%d' % port
    if kind == 'hostname':
        return dict(number=10, summary=(
            'runbook cause 10: the certificate at %s is for %s, not %s: the name leads to another server or virtual '
            'host, or the certificate was issued for another name (%s)%s' % (
                peer, ', '.join(cert.get('names') or []) or cert.get('subject') or 'another name', host,
                r.get('verify_message'), _twilio_text(wss))),
            remedy='Give %s a certificate that names it (and a server block for it in the proxy), or use the name the '
                   'certificate is for in PUBLIC_BASE_URL; check that the DNS record of %s leads to this service.'
                   % (host, host))
    if kind == 'verify':
        code = r.get('verify_code')
        if code in (VERIFY_EXPIRED, VERIFY_NOT_YET_VALID):
            remedy = 'Renew the certificate of %s (valid until %s) and reload the proxy.' % (host, cert.get('not_after'))
        else:
            remedy = ('Serve a certificate for %s from a public CA (e.g. Let\'s Encrypt) with its full chain: Twilio '
                      'trusts public CAs only. To check a test set-up behind a private CA, set doctor_ca_bundle to '
                      'that CA\'s PEM file.' % host)
        return dict(number=None, summary=(
            'the certificate of %s is not trusted (%s): %s%s%s' % (
                r['url'], external.get('trust'), r.get('verify_message'),
                ' (self-signed)' if cert.get('self_signed') else '', _twilio_text(wss))),
            remedy=remedy)
    if kind == 'plaintext':
        return dict(number=7, summary=(
            'runbook cause 7: %s does not speak TLS (a plain-HTTP listener answered the handshake: %s): the URL\'s '
            'port reaches an HTTP port instead of the TLS proxy%s' % (peer, r['error'], _twilio_text(wss))),
            remedy='Terminate TLS in front of the app: an https listener for %s on %d forwarding to %s, or the '
                   'proxy\'s https port in PUBLIC_BASE_URL.' % (host, external['port'], app))
    return dict(number=None, summary='the TLS handshake with %s fails: %s%s' % (peer, r['error'], _twilio_text(wss)),
                remedy='Fix the TLS set-up of the proxy for %s (TLS 1.2 or newer, the certificate and its key).' % host)


# --- descriptions ----------------------------------------------------------------------------------------
def _twilio_text(wss):
    code = _twilio_error(wss)
    names = {31901: 'connection timeout', 31902: 'connection refused', 31910: 'TLS handshake error',
             31920: 'WebSocket handshake error'}
    return '; a call\'s media stream would fail with Twilio error %d (%s)' % (code, names[code]) if code else ''


def _server(r):
    return ' (Server: %s)' % r['server'] if r.get('server') else ''


def _first_address(external, port):
    addresses = (external.get('dns') or {}).get('addresses') or []
    if not addresses:
        return external.get('host')
    return ('[%s]:%d' if ':' in addresses[0] else '%s:%d') % (addresses[0], port)


def _describe(result):
    if result.get('not_run'):
        return result['not_run']
    if result['status'] is not None and result['error_class'] != 'bad_accept':
        text = '%s -> %s%s' % (result['url'], result['status'], (' ' + result['reason']) if result.get('reason') else '')
        if result.get('subprotocol'):
            text += ', Sec-WebSocket-Protocol: %s echoed' % result['subprotocol']
        elif result['error_class'] == 'no_subprotocol':
            text += ', no Sec-WebSocket-Protocol echoed'
    else:
        text = '%s -> %s' % (result['url'], result['error'])
    if result.get('latency_ms') is not None:
        text += ' in %.0f ms' % result['latency_ms']
    if result.get('peer'):
        text += ' from %s' % result['peer']
    return text + _server(result)


def _pass_note(result, facts):
    """A 200 whose body is not what the app answers locally may come from another service."""
    local = [s for s in (facts.get('healthz') or {}).get('samples', []) if s['status'] == 200]
    body = result.get('body')
    if body is None or not local:
        return ''
    if body.strip() == (local[0].get('body') or '').strip():
        return '; same body as on 127.0.0.1:%d' % facts['port']['port']
    return '; note: body %r differs from the local %r' % (body[:60], (local[0].get('body') or '')[:60])


def _describe_certificate(cert):
    if cert.get('error'):
        return 'certificate: %s' % cert['error']
    return 'certificate presented: subject %s, issuer %s%s, names %s, valid until %s' % (
        cert['subject'], cert['issuer'], ' (self-signed)' if cert['self_signed'] else '',
        ', '.join(cert['names']) or 'none', cert['not_after'])


def _where(external):
    """-> (relation, text): where the public name leads, compared with what is known of the target."""
    dns = external.get('dns') or {}
    addresses = dns.get('addresses') or []
    target = external.get('target') or {}
    if not addresses:
        return 'none', '%s does not resolve from the controller: %s' % (external.get('host'), dns.get('error'))
    if _is_address(external):
        text = '%s is an IP address (no DNS name)' % external['host']
    else:
        text = '%s resolves to %s from the controller' % (external['host'], ', '.join(addresses))
    if all(is_loopback(a) for a in addresses):
        return 'loopback', text + ': a loopback address (%s)' % target.get('how', 'target unknown')
    if not target.get('addresses'):
        return 'unknown', text + '; the target\'s addresses are unknown (%s)' % target.get('how', 'unknown')
    if any(a in target['addresses'] for a in addresses):
        return 'target', text + ': the server itself (%s)' % target['how']
    return 'other', text + ': not one of the server\'s addresses (%s) - a load balancer in front, or another host' % (
        target['how'])


def _is_address(external):
    return ((external.get('dns') or {}).get('addresses') or []) == [external.get('host')]


def _local(facts):
    """What the host itself shows: the app's listener and its /healthz."""
    port = facts['port']['port']
    on_port = [s for s in (facts.get('listen') or {}).get('on_port', []) if s.get('app_role')]
    masters = [s for s in on_port if s['app_role'] == 'master'] or on_port
    where = ', '.join('%s:%d (%s %s)' % (s['address'], s['port'], s['app_role'], s['pid']) for s in masters)
    url = (facts.get('healthz') or {}).get('url') or 'http://127.0.0.1:%d/healthz' % port
    return 'on the server: %s answers 200 (healthz layer); the app listens on %s, $PORT=%d from %s' % (
        url, where or 'port %d' % port, port, facts['port']['source'])


def _url_check(layer, external):
    relation, where = _where(external)
    detail = '%s (%s); %s' % (external['base_url'], external['source'], where)
    if external['scheme'] == 'https':
        detail += '; TLS verification against %s' % external.get('trust') if external.get('validate_certs') else \
            '; TLS NOT verified (doctor_validate_certs=false), Twilio verifies it'
        if external.get('ca_bundle') and external.get('validate_certs'):
            detail += ' (Twilio trusts public CAs only)'
    if relation == 'loopback':
        detail += '; note: a loopback URL checks this machine, not what Twilio reaches (runbook cause 10)'
    if external['scheme'] != 'https':
        layer.check(CHECK_URL, 'warn', detail + '; http:// gives ws:// media streams: Twilio needs wss:// '
                    '(Twilio error 31922)')
    else:
        layer.check(CHECK_URL, 'pass', detail)


def _not_judged(facts, layer, external):
    """The service is down locally: show what the controller saw, judge nothing (runbook section 0)."""
    why = 'not judged: /healthz is not a stable 200 on 127.0.0.1:%d yet, so the outside view says nothing new ' \
          '(fix the failing layers above first, runbook section 0); from the controller: ' % facts['port']['port']
    layer.check(CHECK_URL, 'skip', '%s (%s); %s' % (external['base_url'], external['source'], _where(external)[1]))
    for name, result in ((CHECK_HTTPS, external['https']), (CHECK_WSS, external['wss'])):
        layer.check(name, 'skip', why + _describe(result))
    if external['https'].get('ok'):
        layer.check('public URL leads here', 'warn', '%s answers 200 although the app on this server does not: the '
                    'name leads to another server (runbook cause 10)' % external['https']['url'])
