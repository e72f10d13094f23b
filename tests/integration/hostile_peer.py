"""A real hostile HTTP/WebSocket peer on 127.0.0.1, in its own process (stopped by its PID).

`python hostile_peer.py PORT MODE` serves every connection according to MODE:

- trickle: every request is answered one byte every 0.5 s, an endless header block (`curl -m` gives up;
  a per-read timeout never fires). webhook-trickle: the same, except for a quick 200 to GET /healthz.
- ws-trickle, ws-headers, ws-body, ws-flood, ws-giant: plain requests get a quick answer (/healthz 200 "ok",
  anything else 404), and the WebSocket upgrade gets: its 101 one byte every 0.5 s (ws-trickle); a 101 and
  endless headers at full speed (ws-headers); a 400 announcing a 100 GB body and sending 64 MiB of it
  (ws-body); a valid 101, then small text frames as fast as the socket takes them (ws-flood); a valid 101,
  then a frame announcing 1 TiB and sending 64 MiB of it (ws-giant). The peer then holds the connection
  until the client closes it.

`HostilePeer` starts the process and stops it by its PID.
"""

import base64
import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time

from gunicorn_service import free_port, stop_popen

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SENT_MAX = 64 << 20
MODES = ("trickle", "webhook-trickle", "ws-trickle", "ws-headers", "ws-body", "ws-flood", "ws-giant")


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    lines = data.split(b"\r\n")
    path = lines[0].split(b" ")[1].decode() if len(lines[0].split(b" ")) > 1 else "/"
    fields = (line.partition(b":") for line in lines[1:] if b":" in line)
    headers = dict((name.strip().lower(), value.strip()) for name, dummy, value in fields)
    return path, headers


def trickle(conn, data, every=0.5):
    for i in range(len(data)):
        conn.sendall(data[i:i + 1])
        time.sleep(every)


def endless(piece):
    n = 0
    while True:
        n += 1
        yield piece(n)


def handshake_101(headers):
    accept = base64.b64encode(hashlib.sha1(headers.get(b"sec-websocket-key", b"") + GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: audio.twilio.com\r\n\r\n")


def send_some(conn, chunk, total=SENT_MAX):
    sent = 0
    while sent < total:
        conn.sendall(chunk)
        sent += len(chunk)


def hold(conn):
    conn.settimeout(None)
    while conn.recv(65536):
        pass


def serve(conn, mode):
    path, headers = read_head(conn)
    if mode == "trickle" or (mode == "webhook-trickle" and path != "/healthz"):
        trickle(conn, b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Slow-%d: a\r\n" % n for n in range(100000)))
        return
    if headers.get(b"upgrade", b"").lower() != b"websocket" or mode == "webhook-trickle":
        body = b"ok" if path == "/healthz" else b"not here"
        status = b"200 OK" if path == "/healthz" else b"404 Not Found"
        conn.sendall(b"HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, len(body), body))
        return
    if mode == "ws-trickle":
        trickle(conn, handshake_101(headers)[:-2] + b"".join(b"X-Slow-%d: a\r\n" % n for n in range(100000)))
    elif mode == "ws-headers":
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
        for line in endless(lambda n: b"X-Endless-%d: %s\r\n" % (n, b"h" * 100)):
            conn.sendall(line)
    elif mode == "ws-body":
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 100000000000\r\n\r\n")
        send_some(conn, b"b" * 65536)
    elif mode == "ws-flood":
        conn.sendall(handshake_101(headers))
        frame = b'{"event": "noise"}'
        for piece in endless(lambda n: b"\x81" + bytes([len(frame)]) + frame):
            conn.sendall(piece * 64)
    elif mode == "ws-giant":
        conn.sendall(handshake_101(headers) + b"\x82\x7f" + struct.pack("!Q", 1 << 40))
        send_some(conn, b"g" * 65536)
    hold(conn)


def handle(conn, mode):
    try:
        with conn:
            conn.settimeout(30)
            serve(conn, mode)
    except OSError:
        pass  # the client gave up: what the test wants


def main(port, mode):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    while True:
        conn = listener.accept()[0]
        threading.Thread(target=handle, args=(conn, mode), daemon=True).start()


class HostilePeer:
    """The peer in its own process on a free loopback port; stop() ends it by its PID."""

    def __init__(self, mode):
        assert mode in MODES, mode
        self.mode = mode
        self.port = free_port()
        self.proc = None

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(self.port), self.mode],
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "the hostile peer did not start"
                time.sleep(0.05)

    def stop(self):
        if self.proc is not None:
            stop_popen(self.proc, [], grace=5)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
