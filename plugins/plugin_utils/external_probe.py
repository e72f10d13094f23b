# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""external layer, run on the controller: the public URL the way Twilio and the user reach it
(runbook section 0, "What to collect" step 2, and step 5.2 over wss://).

GET PUBLIC_BASE_URL + healthz over https and the Twilio WebSocket handshake over wss, with TLS
verification on, short timeouts, both at once. Facts only (what answered, how fast, from which
address, which error class); the verdict (judge_external.py) decides what they mean.

`requests` and `websocket-client` are needed only here (requirements.txt); when one is missing its
check is recorded as not run, with the pip command, so the rest of the report is still written.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import importlib
import importlib.util
import ipaddress
import os
import socket
import ssl
import sys
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2 is not a controller
    urlsplit = None

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import deadline_http
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import twilio
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain.twilio import SUBPROTOCOL as TWILIO_SUBPROTOCOL


def _installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


LOAD_ERRORS = {}   # library -> why it is installed but does not import (a broken dependency, an old OpenSSL)


def _load(name):
    """The library, imported on first use; None when it cannot be (the reason kept in LOAD_ERRORS)."""
    try:
        return importlib.import_module(name)
    except Exception as e:  # an installed library that fails to import must not end the report in a traceback
        LOAD_ERRORS[name] = '%s: %s' % (e.__class__.__name__, str(e)[:200])
        return None


def _unusable(library, module):
    """The not_run reason for a library the check needs and cannot use."""
    if module in LOAD_ERRORS:
        return '%s is installed on the controller but does not import (%s): %s' % (
            library, LOAD_ERRORS[module], _pip('--force-reinstall ' + library))
    return '%s is not installed on the controller: %s' % (library, _pip(library))


# Found, not imported: together they take ~0.1 s to import, on the path of every report (the action
# plugin loads this module), and are used only when there is a public URL to probe.
HAS_REQUESTS = _installed('requests')
HAS_WEBSOCKET = _installed('websocket')
HAS_CRYPTOGRAPHY = _installed('cryptography')

DEFAULT_TIMEOUT = 5.0
USER_AGENT = 'sre.gunicorn_doctor external probe'
DEFAULT_PORTS = {'https': 443, 'http': 80}
WS_SCHEMES = {'https': 'wss', 'http': 'ws'}
BODY_BYTES = 300

# OpenSSL X509_V_ERR_* codes the report explains (ssl.SSLCertVerificationError.verify_code).
VERIFY_HOSTNAME_MISMATCH = 62
VERIFY_EXPIRED = 10
VERIFY_NOT_YET_VALID = 9


class UrlError(ValueError):
    """A public base URL that is not http(s)://HOST[:PORT][/PREFIX]."""


def without_userinfo(url):
    """The URL with any user:password@ removed: facts and reports never carry credentials."""
    text = (url or '').strip()
    scheme, sep, rest = text.partition('://')
    if not sep:
        scheme, rest = '', text
    authority, slash, tail = rest.partition('/')
    if '@' in authority:
        authority = '<redacted>@' + authority.rpartition('@')[2]
    return (scheme + sep if sep else '') + authority + slash + tail


# --- the URL ---------------------------------------------------------------------------------------
def split_base_url(url):
    """'https://voice.example.com/prefix' -> dict(scheme, host, port, netloc, prefix, base), or UrlError for a URL
    this probe cannot use. Parsed by twilio.split_base_url (a bare host means https, as the app's own stream URL
    builder does; user:password@ is dropped); ws(s):// is read as http(s)://."""
    parsed = twilio.split_base_url(url)
    if parsed is None:
        raise UrlError('is empty')
    scheme = {'wss': 'https', 'ws': 'http'}.get(parsed['scheme'], parsed['scheme'])
    if scheme not in DEFAULT_PORTS:
        raise UrlError('has scheme %r: use https://HOST (Twilio needs https and wss)' % parsed['scheme'])
    if not parsed['host']:
        raise UrlError('has no host name')
    if parsed['query_or_fragment']:
        raise UrlError('carries a query or fragment: use https://HOST[:PORT][/PREFIX] only')
    if parsed['port'] == -1:
        raise UrlError('has an invalid port')
    prefix = [seg for seg in parsed['prefix'].split('/') if seg]
    host = parsed['host']
    port = parsed['port'] or DEFAULT_PORTS[scheme]
    netloc = ('[%s]' % host) if ':' in host else host
    if port != DEFAULT_PORTS[scheme]:
        netloc += ':%d' % port
    return {'scheme': scheme, 'host': host, 'port': port, 'netloc': netloc, 'prefix': prefix,
            'base': '%s://%s%s' % (scheme, netloc, ''.join('/' + seg for seg in prefix))}


def join_url(parts, path, scheme=None):
    """The base's prefix + path, empty segments dropped (a trailing '/' never makes '//')."""
    segments = parts['prefix'] + [seg for seg in path.split('/') if seg]
    return '%s://%s/%s' % (scheme or parts['scheme'], parts['netloc'], '/'.join(segments))


def public_base_url(argument, facts):
    """-> (url, source): the action's argument (doctor_public_base_url) wins, else what the voice
    probe resolved on the host (doctor_public_base_url or the service's PUBLIC_BASE_URL)."""
    if argument:
        return argument, 'doctor_public_base_url'
    voice = facts.get('voice')
    if isinstance(voice, dict) and voice.get('public_base_url'):
        return voice['public_base_url'], voice.get('public_base_url_source') or \
            'PUBLIC_BASE_URL of the service (read by the voice probe)'
    return None, None


def skip_reason(facts):
    """Why there is nothing to probe, and how to enable the layer."""
    names = facts.get('env_names') or []
    if 'PUBLIC_BASE_URL' in names:
        return ('not probed: PUBLIC_BASE_URL is set in the service environment, but the voice probe did not '
                'report its value (doctor_voice_checks=false?): set doctor_public_base_url to check the '
                'service from the controller the way Twilio reaches it')
    return ('not probed: no public URL known; set doctor_public_base_url (e.g. https://voice.example.com) or '
            'PUBLIC_BASE_URL in the service environment to check https and wss from the controller, '
            'the way Twilio reaches the service')


def _pip(library):
    return '%s -m pip install %s' % (sys.executable or 'python3', library)


def missing_libraries():
    """-> {library: pip command} for the controller's Python."""
    missing = {}
    if not HAS_REQUESTS:
        missing['requests'] = _pip('requests')
    if not HAS_WEBSOCKET:
        missing['websocket-client'] = _pip('websocket-client')
    return missing


# --- addresses -------------------------------------------------------------------------------------
def _literal_ip(host):
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def resolve(host, port, timeout, resolver=None):
    """-> dict(addresses, error, seconds). The lookup is bounded by `timeout` (getaddrinfo has no
    timeout of its own; a stuck resolver must not stall the report)."""
    started = time.time()
    literal = _literal_ip(host)
    if literal:
        return {'addresses': [literal], 'error': None, 'seconds': 0.0}
    lookup = resolver or socket.getaddrinfo
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(lookup, host, port, 0, socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=timeout)
        addresses = []
        for info in infos:
            address = info[4][0]
            if address not in addresses:
                addresses.append(address)
        error = None
    except FutureTimeout:
        addresses, error = [], 'no answer from the resolver within %g s' % timeout
    except socket.gaierror as e:
        addresses, error = [], '%s (%s)' % (e.strerror or e, _gai_name(e.errno))
    except (OSError, UnicodeError) as e:
        addresses, error = [], str(e)
    finally:
        pool.shutdown(wait=False)
    return {'addresses': addresses, 'error': error, 'seconds': round(time.time() - started, 3)}


def _gai_name(code):
    for name in ('EAI_NONAME', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NODATA', 'EAI_SERVICE'):
        if getattr(socket, name, None) == code:
            return name
    return 'error %s' % code


def controller_addresses():
    """The controller's own addresses (for ansible_connection=local, where the target is the controller)."""
    found = set(['127.0.0.1', '::1'])
    try:
        import psutil
        for addrs in psutil.net_if_addrs().values():
            for a in addrs:
                if a.family in (socket.AF_INET, socket.AF_INET6):
                    found.add(a.address.split('%')[0])
    except ImportError:
        try:
            for info in socket.getaddrinfo(socket.gethostname(), None):
                found.add(info[4][0])
        except (OSError, UnicodeError):
            pass
    return sorted(found)


def target_addresses(connection, remote_addr, known=(), timeout=2.0, resolver=None):
    """What the controller can tell about the target's addresses, without a round trip:
    the controller's own for a local connection, else ansible_host resolved, plus gathered facts."""
    addresses = set(a for a in known if a)
    local = connection == 'local' or (remote_addr or '') in ('localhost', '127.0.0.1', '::1')
    if local:
        addresses.update(controller_addresses())
        how = 'ansible_connection=local: the target is this controller'
    elif remote_addr:
        found = resolve(remote_addr, None, timeout, resolver)
        addresses.update(found['addresses'])
        how = 'ansible_host=%s' % remote_addr + (' -> %s' % ', '.join(found['addresses']) if found['addresses'] and
                                                 _literal_ip(remote_addr) is None else '')
    else:
        how = 'unknown'
    if known and not local:
        how += ' and gathered facts'
    return {'addresses': sorted(addresses), 'local': local, 'how': how}


# --- errors ----------------------------------------------------------------------------------------
def _chain(exc):
    """Every exception behind `exc`: causes, contexts, wrapped args and urllib3's `reason`."""
    seen, todo, out = set(), [exc], []
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        out.append(e)
        todo.extend([getattr(e, 'reason', None), e.__cause__, e.__context__])
        todo.extend(a for a in getattr(e, 'args', ()) if isinstance(a, BaseException))
    return out


PLAINTEXT_MARKERS = ('WRONG_VERSION_NUMBER', 'wrong version number', 'record layer failure', 'packet length too long',
                     'http request', 'unknown protocol')


def classify(exc):
    """An exception of requests, websocket-client or the socket layer -> dict(error_class, error, ...).

    error_class: tls (verify: the certificate; plaintext: the port does not speak TLS), refused,
    timeout, reset, unreachable, dns, connection."""
    if isinstance(exc, deadline_http.OutOfTime):   # the exchange's deadline: it says what was still arriving
        return {'error_class': 'timeout', 'error': str(exc)}
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            code = getattr(e, 'verify_code', None)
            message = getattr(e, 'verify_message', None) or str(e)
            return {'error_class': 'tls', 'tls_kind': 'hostname' if code == VERIFY_HOSTNAME_MISMATCH else 'verify',
                    'verify_code': code, 'verify_message': message,
                    'error': 'certificate verify failed: %s' % message}
    for e in chain:
        if isinstance(e, ssl.SSLError) and not isinstance(e, (ssl.SSLZeroReturnError, ssl.SSLEOFError)):
            text = str(e)
            plain = any(m in text for m in PLAINTEXT_MARKERS)
            return {'error_class': 'tls', 'tls_kind': 'plaintext' if plain else 'handshake',
                    'error': 'TLS handshake failed: %s' % _short(text)}
    # The socket-level errors first: urllib3's NewConnectionError, which wraps them, is itself a
    # ConnectTimeoutError subclass and must not make every refused connection a timeout.
    for e in chain:
        if isinstance(e, ConnectionRefusedError):
            return {'error_class': 'refused', 'error': 'connection refused'}
    for e in chain:
        if isinstance(e, socket.gaierror):
            return {'error_class': 'dns', 'error': 'name does not resolve: %s' % _short(str(e))}
    for e in chain:
        if isinstance(e, (ConnectionResetError, ConnectionAbortedError, ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return {'error_class': 'reset', 'error': 'connection closed by the peer: %s' % _short(str(e))}
    for e in chain:
        if isinstance(e, OSError) and e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return {'error_class': 'unreachable', 'error': _short(str(e))}
    for e in chain:
        if isinstance(e, (socket.timeout, TimeoutError)) or _is_timeout_class(e):
            return {'error_class': 'timeout', 'error': 'no answer: %s' % _short(str(e) or 'timed out')}
    return {'error_class': 'connection', 'error': '%s: %s' % (exc.__class__.__name__, _short(str(exc)))}


def _is_timeout_class(e):
    if type(e).__name__ == 'NewConnectionError':
        return False
    names = [c.__name__ for c in type(e).__mro__]
    return any(n in ('Timeout', 'ConnectTimeout', 'ReadTimeout', 'ReadTimeoutError', 'ConnectTimeoutError',
                     'WebSocketTimeoutException') for n in names)


def _short(text, limit=300):
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _peer(sock):
    try:
        address = sock.getpeername()
        host = address[0]
        return '[%s]:%d' % (host, address[1]) if ':' in host else '%s:%d' % (host, address[1])
    except (AttributeError, OSError, TypeError, IndexError):
        return None


# --- TLS -------------------------------------------------------------------------------------------
def trust_store(ca_bundle, validate_certs):
    """-> (CA file or None, where it comes from): one store for both checks, as requests would pick it."""
    if not validate_certs:
        return None, 'not verified (doctor_validate_certs=false)'
    if ca_bundle:
        return ca_bundle, 'doctor_ca_bundle=%s' % ca_bundle
    for name in ('REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'):
        if os.environ.get(name) and os.path.isfile(os.environ[name]):
            return os.environ[name], '%s=%s' % (name, os.environ[name])
    certs = _load('requests.certs') if HAS_REQUESTS else None
    if certs is not None:
        return certs.where(), 'the certifi bundle of requests (%s)' % certs.where()
    return None, "the controller's default CA store"


def ssl_context(cafile, validate_certs):
    if not validate_certs:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    return context


def fetch_certificate(host, port, address, timeout):
    """The leaf certificate the server presents (no verification: only to describe it).
    -> dict(subject, issuer, names, not_after, self_signed) or dict(error)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sni = None if _literal_ip(host) else host
    try:   # the handshake within `timeout` in all: a server may trickle it
        with deadline_http.connect([address], port, deadline_http.Deadline(timeout), context, sni) as tls:
            der = tls.getpeercert(binary_form=True)
            version = tls.version()
    except (OSError, ssl.SSLError) as e:
        return {'error': _short(str(e))}
    if not der:
        return {'error': 'the server sent no certificate'}
    x509 = _load('cryptography.x509') if HAS_CRYPTOGRAPHY else None
    if x509 is None:
        return {'error': 'install cryptography on the controller to describe the certificate', 'tls_version': version}
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as e:
        return {'error': 'the certificate cannot be parsed: %s' % _short(str(e)), 'tls_version': version}
    try:
        san = cert.extensions.get_extension_for_oid(x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = ['DNS:%s' % n for n in san.get_values_for_type(x509.DNSName)]
        names += ['IP:%s' % n for n in san.get_values_for_type(x509.IPAddress)]
    except (x509.ExtensionNotFound, ValueError):
        names = []
    not_after = getattr(cert, 'not_valid_after_utc', None) or cert.not_valid_after
    return {'subject': cert.subject.rfc4514_string(), 'issuer': cert.issuer.rfc4514_string(), 'names': names,
            'not_after': not_after.strftime('%Y-%m-%d %H:%M:%S UTC'), 'self_signed': cert.subject == cert.issuer,
            'tls_version': version}


# --- the two checks --------------------------------------------------------------------------------
def _result(url, **values):
    result = {'url': url, 'ok': False, 'status': None, 'reason': None, 'latency_ms': None, 'peer': None,
              'server': None, 'error_class': None, 'error': None, 'not_run': None}
    result.update(values)
    return result


def _watched_session(requests, watchdog):
    """A requests session whose connections hand their sockets to `watchdog` as urllib3 opens them (to the
    server or a proxy), so that the exchange ends at its deadline whatever the peer trickles."""
    from urllib3 import connection, connectionpool

    class Watched(object):
        def _new_conn(self):
            sock = super(Watched, self)._new_conn()
            watchdog.watch(sock)
            return sock

    pools = {
        'http': type('HTTPPool', (connectionpool.HTTPConnectionPool,),
                     {'ConnectionCls': type('HTTPConn', (Watched, connection.HTTPConnection), {})}),
        'https': type('HTTPSPool', (connectionpool.HTTPSConnectionPool,),
                      {'ConnectionCls': type('HTTPSConn', (Watched, connection.HTTPSConnection), {})}),
    }

    class Adapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            requests.adapters.HTTPAdapter.init_poolmanager(self, *args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, *args, **kwargs):
            manager = requests.adapters.HTTPAdapter.proxy_manager_for(self, *args, **kwargs)
            manager.pool_classes_by_scheme = pools
            return manager

    session = requests.Session()
    for prefix in ('http://', 'https://'):
        session.mount(prefix, Adapter())
    return session


def check_https(url, cafile, validate_certs, timeout):
    """GET url over http(s), no redirects followed (Twilio's media stream follows none either), all of it (TLS,
    headers, the first BODY_BYTES of the body) within `timeout` s."""
    requests = _load('requests') if HAS_REQUESTS else None
    if requests is None:
        return _result(url, not_run=_unusable('requests', 'requests'))
    started = time.time()
    deadline = deadline_http.Deadline(timeout)
    watchdog = deadline_http.Watchdog(deadline)
    session = _watched_session(requests, watchdog)
    try:
        if not validate_certs:
            try:
                from urllib3.exceptions import InsecureRequestWarning
                import urllib3
                urllib3.disable_warnings(InsecureRequestWarning)
            except ImportError:
                pass
        response = session.get(url, timeout=(timeout, timeout), verify=(cafile or True) if validate_certs else False,
                               allow_redirects=False, stream=True, headers={'User-Agent': USER_AGENT})
        if deadline.remaining() <= 0:   # the watchdog cut the headers short: http.client took the cut for their end
            raise deadline_http.OutOfTime(deadline.why)
        latency = round((time.time() - started) * 1000, 1)
        try:
            peer = _peer(response.raw._connection.sock)  # urllib3 keeps the socket while the body is unread
        except AttributeError:
            peer = None
        try:
            body = response.raw.read(BODY_BYTES, decode_content=True) or b''
        except Exception:  # a truncated body (or one cut at the deadline) is still an answer; the status decides
            body = b''
        response.close()
        return _result(url, ok=response.status_code == 200, status=response.status_code, reason=response.reason,
                       latency_ms=latency, peer=peer, server=response.headers.get('Server'),
                       location=response.headers.get('Location'), body=body.decode('utf-8', 'replace'),
                       error_class=None if response.status_code == 200 else 'http_status',
                       error=None if response.status_code == 200 else 'HTTP %d %s' % (
                           response.status_code, response.reason or ''))
    except Exception as e:  # requests' whole family plus ssl/socket errors: classified, never raised
        latency = round((time.time() - started) * 1000, 1)
        if watchdog.fired:   # the deadline cut the connection: whatever requests says, that is why it ended
            return _result(url, latency_ms=latency, error_class='timeout', error='%s (%s were still arriving)' % (
                deadline.why, 'the TLS handshake or the headers' if url.startswith('https:') else 'the headers'))
        return _result(url, latency_ms=latency, **classify(e))
    finally:
        watchdog.cancel()
        session.close()


def check_wss(url, cafile, validate_certs, timeout, addresses=None):
    """The Twilio media-stream handshake: 101, a valid Sec-WebSocket-Accept (websocket-client checks
    it) and Sec-WebSocket-Protocol: audio.twilio.com echoed. Closed right after the handshake.

    The connection (to the first of `addresses` that accepts, else the URL's host) and the TLS handshake are made
    here, so that all of it - TLS, the answer's headers and body - ends within `timeout` s and reads at most
    deadline_http.HEADER_MAX bytes."""
    websocket = _load('websocket') if HAS_WEBSOCKET else None
    if websocket is None:
        return _result(url, not_run=_unusable('websocket-client', 'websocket'))
    started = time.time()
    ws = None
    parts = urlsplit(url)
    deadline = deadline_http.Deadline(timeout, why='no complete handshake answer within %g s' % timeout)
    try:
        tls = ssl_context(cafile, validate_certs) if parts.scheme == 'wss' else None
        raw = deadline_http.connect(addresses or [parts.hostname], parts.port or (443 if tls else 80), deadline, tls,
                                    parts.hostname)
        sock = deadline_http.BoundedSocket(raw, deadline, too_large=deadline_http.HANDSHAKE_TOO_LARGE,
                                           doing='the handshake answer was still arriving')
        # The subprotocol goes as a plain header so websocket-client does not reject a missing echo
        # before we can say so; the echo is checked below.
        ws = websocket.create_connection(
            url, timeout=timeout, header=['Sec-WebSocket-Protocol: %s' % TWILIO_SUBPROTOCOL], socket=sock,
            redirect_limit=0, enable_multithread=False)
        latency = round((time.time() - started) * 1000, 1)
        headers = dict((k.lower(), v) for k, v in (ws.getheaders() or {}).items())
        echoed = headers.get('sec-websocket-protocol')
        ok = (echoed or '').strip().lower() == TWILIO_SUBPROTOCOL
        return _result(url, ok=ok, status=ws.getstatus(), latency_ms=latency, peer=_peer(ws.sock),
                       server=headers.get('server'), subprotocol=echoed,
                       error_class=None if ok else 'no_subprotocol',
                       error=None if ok else '101 without Sec-WebSocket-Protocol: %s echoed (got %r)' % (
                           TWILIO_SUBPROTOCOL, echoed))
    except Exception as e:  # websocket-client, ssl and socket errors: classified, never raised
        latency = round((time.time() - started) * 1000, 1)
        status = getattr(e, 'status_code', None)
        if status is not None:
            headers = dict((k.lower(), v) for k, v in (getattr(e, 'resp_headers', None) or {}).items())
            body = getattr(e, 'resp_body', None) or b''
            return _result(url, status=status, reason=getattr(e, 'status_message', None), latency_ms=latency,
                           server=headers.get('server'), body=body[:BODY_BYTES].decode('utf-8', 'replace')
                           if isinstance(body, bytes) else str(body)[:BODY_BYTES],
                           error_class='http_status', error='handshake answered %s, not 101' % status)
        if 'Redirect limit exhausted' in str(e):
            return _result(url, latency_ms=latency, error_class='http_status',
                           error='handshake answered a redirect, not 101 (Twilio follows none)')
        if 'Invalid WebSocket Header' in str(e):
            return _result(url, status=101, latency_ms=latency, error_class='bad_accept',
                           error='101 with an invalid Upgrade/Connection/Sec-WebSocket-Accept header')
        return _result(url, latency_ms=latency, **classify(e))
    finally:
        if ws is not None:
            try:
                ws.close(timeout=1)
            except Exception:  # closing is best effort: the handshake result stands
                pass


# --- the layer -------------------------------------------------------------------------------------
def collect(base_url, source, healthz_path='/healthz', ws_path='/ws/twilio-media', validate_certs=True,
            ca_bundle=None, timeout=DEFAULT_TIMEOUT, target=None, resolver=None, ws_elsewhere=None):
    """-> facts of the external layer. Never raises for what the network does; a malformed URL is
    recorded as url_error (the caller decides whether that is a user input error). ws_elsewhere: the TwiML's
    <Stream url> on another host (the media WebSocket is not this service's: the wss check is not run)."""
    started = time.time()
    facts = {'base_url': without_userinfo(base_url), 'source': source, 'timeout': timeout, 'validate_certs': bool(validate_certs),
             'ca_bundle': ca_bundle or None, 'target': target or {'addresses': [], 'local': False, 'how': 'unknown'},
             'url_error': None, 'dns': None, 'https': None, 'wss': None, 'certificate': None}
    try:
        parts = split_base_url(base_url)
    except UrlError as e:
        facts['url_error'] = '%r %s' % (without_userinfo(base_url), e)
        facts['elapsed'] = round(time.time() - started, 3)
        return facts
    facts.update(scheme=parts['scheme'], host=parts['host'], port=parts['port'], base_url=parts['base'])
    cafile, trust = trust_store(ca_bundle, validate_certs)
    facts['trust'] = trust if parts['scheme'] == 'https' else None
    https_url = join_url(parts, healthz_path)
    wss_url = join_url(parts, ws_path, WS_SCHEMES[parts['scheme']])

    dns = resolve(parts['host'], parts['port'], timeout, resolver)
    facts['dns'] = dns
    if dns['error']:
        failed = dict(error_class='dns', error='%s does not resolve: %s' % (parts['host'], dns['error']))
        facts['https'] = _result(https_url, **failed)
        facts['wss'] = _result(wss_url, **failed)
    else:
        for name, present in (('requests', HAS_REQUESTS), ('websocket', HAS_WEBSOCKET)):
            if present:
                _load(name)   # first imports here, not racing in two threads
        with ThreadPoolExecutor(max_workers=2) as pool:
            f_https = pool.submit(check_https, https_url, cafile, validate_certs, timeout)
            f_wss = None if ws_elsewhere else pool.submit(check_wss, wss_url, cafile, validate_certs, timeout,
                                                          dns['addresses'])
            facts['https'] = f_https.result()
            facts['wss'] = f_wss.result() if f_wss else _result(ws_elsewhere, not_run=(
                'the TwiML streams to %s: the media WebSocket is served elsewhere, not by this service' % ws_elsewhere))
        if any(r['error_class'] == 'tls' for r in (facts['https'], facts['wss'])):
            facts['certificate'] = fetch_certificate(parts['host'], parts['port'], dns['addresses'][0], timeout)
    facts['elapsed'] = round(time.time() - started, 3)
    return facts
