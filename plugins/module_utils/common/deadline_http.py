# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One wall-clock deadline and byte caps for every HTTP and WebSocket exchange of the probes.

A socket timeout bounds each read, not the exchange: a peer that trickles a byte every second keeps
a 3 s timeout waiting forever, and one that sends endless headers or a giant body fills memory.
Here every exchange has one Deadline. `BoundedSocket` sets the socket timeout to what is left of it
before each read and write and refuses to read more than a byte budget (the status line and headers
first, then the body or the frames); `request` is one HTTP/1.1 exchange over it (http.client parses);
`connect` opens the TCP (and TLS) connection within the deadline, for WebSocket clients that take a
ready socket. `request(..., unix=PATH)` has the same exchange over a unix socket (gunicorn bound to
`unix:PATH`). `Watchdog` shuts down the sockets of a library that opens its own (requests) when the
deadline passes. Nothing here retries; errors are OSError subclasses with a one-line message.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import io
import selectors
import socket
import ssl
import threading
import time

try:
    from http.client import HTTPConnection
except ImportError:  # pragma: no cover - Python 2 is not a target
    HTTPConnection = object

HEADER_MAX = 64 << 10      # status line and headers of one answer
READ_SLACK = 8 << 10       # what a buffered reader may fetch past the headers in one read
HANDSHAKE_TOO_LARGE = 'the WebSocket handshake answer (headers and body) is larger than %d KiB' % (HEADER_MAX >> 10)


class OutOfTime(OSError):
    """The exchange's deadline passed before it was complete."""


class TooLarge(OSError):
    """The peer sent more than the exchange allows."""


class Deadline(object):
    """A point in time (monotonic) and the words that say it passed. `within`: a deadline this one may not outlast
    (the probe's overall one): when that comes first, its words are used."""

    def __init__(self, seconds, within=None, why=None):
        self.end = time.monotonic() + seconds
        self.why = why or 'no complete answer within %g s' % seconds
        if within is not None and within.end < self.end:
            self.end, self.why = within.end, within.why

    def remaining(self):
        return self.end - time.monotonic()

    def left(self, doing=None):
        """Seconds left; raises OutOfTime (saying what was still going on) when none are."""
        left = self.remaining()
        if left <= 0:
            raise OutOfTime('%s%s' % (self.why, ' (%s)' % doing if doing else ''))
        return left


class BoundedSocket(object):
    """A connected socket: each read and write waits at most until the deadline (or the caller's own, shorter
    timeout), and reads stop at a byte budget. Anything else is the socket's own."""

    def __init__(self, sock, deadline, budget=HEADER_MAX + READ_SLACK,
                 too_large='the status line and headers are larger than %d KiB' % (HEADER_MAX >> 10),
                 doing='the headers were still arriving'):
        self._sock = sock
        self._timeout = None
        self._readers = 0
        self._closing = False
        self.received = 0
        self.deadline = deadline
        self.limit(budget, too_large, doing)

    def limit(self, budget, too_large, doing):
        """From now on: read at most `budget` bytes more; `too_large` and `doing` say what went wrong, in words."""
        self.budget, self.too_large, self.doing = budget, too_large, doing

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def settimeout(self, timeout):
        self._timeout = timeout       # the caller's wait per call (a poll), never past the deadline

    def gettimeout(self):
        return self._timeout

    def _bounded(self, call, *args):
        """call(*args) with the socket timeout at what is left of the deadline (or the caller's shorter wait);
        a wait that ends at the deadline is OutOfTime, one that ends at the caller's wait stays socket.timeout."""
        doing = self.doing if self.received else 'not one byte of an answer yet'
        left = self.deadline.left(doing)
        self._sock.settimeout(left if self._timeout is None else min(left, self._timeout))
        try:
            return call(*args)
        except socket.timeout:
            if self._timeout is None or left <= self._timeout:
                raise OutOfTime('%s (%s)' % (self.deadline.why, doing))
            raise

    def _allowed(self, wanted):
        if self.budget <= 0:
            raise TooLarge(self.too_large)
        return min(wanted, self.budget)

    def recv(self, size, *flags):
        data = self._bounded(self._sock.recv, self._allowed(size), *flags)
        self.budget -= len(data)
        self.received += len(data)
        return data

    def recv_into(self, buffer, size=0, *flags):
        got = self._bounded(self._sock.recv_into, buffer, self._allowed(size or len(buffer)), *flags)
        self.budget -= got
        self.received += got
        return got

    def send(self, data, *flags):
        return self._bounded(self._sock.send, data, *flags)

    def sendall(self, data, *flags):
        return self._bounded(self._sock.sendall, data, *flags)

    def makefile(self, mode='rb', buffering=None, **kwargs):
        """The buffered binary reader http.client reads an answer from, each read bounded as above."""
        if mode not in ('r', 'rb'):
            raise ValueError('a bounded socket is read through makefile(), not written: %r' % mode)
        self._readers += 1
        return io.BufferedReader(_Reader(self), READ_SLACK)

    def close(self):
        # As socket.close(): the connection stays open while a reader made by makefile() is (http.client
        # closes the connection of a `Connection: close` answer before the body is read).
        self._closing = True
        if not self._readers:
            self._sock.close()

    def _reader_closed(self):
        self._readers -= 1
        if self._closing and not self._readers:
            self._sock.close()


class _Reader(io.RawIOBase):
    def __init__(self, sock):
        io.RawIOBase.__init__(self)
        self.sock = sock

    def readable(self):
        return True

    def readinto(self, buffer):
        return self.sock.recv_into(buffer, len(buffer))

    def close(self):
        if not self.closed:
            self.sock._reader_closed()
        io.RawIOBase.close(self)


class _Connection(HTTPConnection):
    """http.client over a BoundedSocket: the connect within the deadline, every read and write within it.
    With `unix`, the connection goes to that unix socket (host is then only the Host header)."""

    def __init__(self, host, port, deadline, unix=None):
        HTTPConnection.__init__(self, host, port, timeout=max(deadline.remaining(), 0.001))
        self.deadline = deadline
        self.bounded = None
        self.unix = unix

    def connect(self):
        self.timeout = self.deadline.left('connecting')
        if self.unix is None:
            HTTPConnection.connect(self)
        else:
            self.sock = connect_unix(self.unix, self.deadline)
        self.sock = self.bounded = BoundedSocket(self.sock, self.deadline)


def connect_unix(path, deadline):
    """A connection to the unix stream socket at `path` within the deadline (a full backlog blocks a connect)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(deadline.left('connecting'))
        sock.connect(path)
    except socket.timeout:
        sock.close()
        raise OutOfTime('%s (connecting to %s)' % (deadline.why, path))
    except Exception:
        sock.close()
        raise
    return sock


def request(host, port, method, path, headers=None, body=None, timeout=3.0, body_max=64 << 10, within=None,
            unix=None):
    """One HTTP/1.1 exchange (Connection: close) within `timeout` seconds in all: connect, request, status line,
    at most HEADER_MAX bytes of headers (http.client also stops at 100 header lines), and at most `body_max`
    bytes of body. -> dict(status, reason, headers: {lower-case name: value}, body: bytes, seconds).
    With `unix` (a socket path) the exchange goes over that unix socket; `host` is then the Host header.
    Raises OutOfTime, TooLarge, socket errors (refused, reset) and http.client.HTTPException (not HTTP)."""
    started = time.monotonic()
    deadline = Deadline(timeout, within)
    conn = _Connection(host, port, deadline, unix=unix)
    try:
        conn.request(method, path, body=body, headers=dict({'Connection': 'close'}, **(headers or {})))
        response = conn.getresponse()
        # Chunked framing may take more bytes than the body itself: twice the body is allowed on the wire.
        conn.bounded.limit(2 * body_max + READ_SLACK, 'more than %d bytes of body' % (2 * body_max + READ_SLACK),
                           'HTTP %s %s; the body was still arriving' % (response.status, response.reason))
        try:
            data = response.read(body_max)
        finally:
            response.close()
        return {'status': response.status, 'reason': response.reason,
                'headers': dict((k.lower(), v) for k, v in response.getheaders()), 'body': data,
                'seconds': round(time.monotonic() - started, 3)}
    finally:
        conn.close()


def connect(addresses, port, deadline, tls=None, server_hostname=None):
    """A TCP connection to the first of `addresses` that accepts, and with an ssl.SSLContext `tls` its TLS
    handshake, all within the deadline. -> the connected (TLS) socket. Raises OSError / ssl.SSLError."""
    error = OSError('no address to connect to')
    for address in addresses:
        try:
            sock = socket.create_connection((address, port), timeout=deadline.left('connecting'))
        except OutOfTime:
            raise
        except (IOError, OSError) as e:
            error = e
            continue
        try:
            return _tls_handshake(sock, tls, server_hostname, deadline) if tls is not None else sock
        except Exception:
            sock.close()
            raise
    raise error


def _tls_handshake(sock, context, server_hostname, deadline):
    """The TLS handshake, driven without blocking so that a server that trickles it cannot outlast the deadline."""
    tls = context.wrap_socket(sock, server_hostname=server_hostname, do_handshake_on_connect=False)
    tls.setblocking(False)
    waiting = selectors.DefaultSelector()   # not select(): an fd past 1023 is usual in a busy controller
    try:
        while not _handshake_step(tls, waiting, deadline):
            pass
    finally:
        waiting.close()
    tls.setblocking(True)
    return tls


def _handshake_step(tls, waiting, deadline):
    """One step of the handshake: True when it is done, else after waiting (until the deadline) for the socket."""
    try:
        tls.do_handshake()
        return True
    except ssl.SSLWantReadError:
        event = selectors.EVENT_READ
    except ssl.SSLWantWriteError:
        event = selectors.EVENT_WRITE
    waiting.register(tls, event)
    try:
        waiting.select(deadline.left('the TLS handshake was still going on'))
    finally:
        waiting.unregister(tls)
    return False


class Watchdog(object):
    """Shuts down the sockets of one exchange when its deadline passes, for libraries that open their own
    (requests): whatever they are blocked reading returns at once. `fired` says it happened."""

    def __init__(self, deadline):
        self.deadline = deadline
        self.fired = False
        self._sockets = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(deadline.remaining(), 0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock):
        with self._lock:
            self._sockets.append(sock)
            if self.fired:
                _shutdown(sock)

    def _fire(self):
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)

    def cancel(self):
        self._timer.cancel()


def _shutdown(sock):
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)   # the socket's own: a TLS socket keeps its state
    except (OSError, TypeError, ValueError):
        pass
