"""deadline_http and the probes' exchanges against real hostile sockets on 127.0.0.1: a peer that trickles a
byte every 0.2 s, one that sends endless headers, one with a huge body, one that accepts and never answers.
Each exchange must end by its one wall-clock deadline (the old per-read timeout never fires on a trickle)."""

import socket
import ssl
import threading
import time
from pathlib import Path

import jinja2
import pytest
import yaml

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import deadline_http
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import host as host_probe
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import verdict
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils import external_probe as external
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import healthz, voice

SLACK = 0.75   # what an exchange may take past its deadline on a loaded machine


class Peer:
    """A loopback server in a thread; each connection gets `answer(conn)` after the request head. Closed (and
    its connections with it) at the end of the test."""

    def __init__(self, answer, unix=None):
        self.answer = answer
        self.listener = socket.socket(socket.AF_UNIX if unix else socket.AF_INET)
        self.listener.bind(unix or ("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = None if unix else self.listener.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn = self.listener.accept()[0]
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.answer(conn)
        except OSError:
            pass   # the client gave up

    def close(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)   # wakes the accept() (close() alone does not)
        except OSError:
            pass
        self.listener.close()
        for conn in self.conns:
            conn.close()
        self.thread.join(2)


@pytest.fixture
def peer():
    started = []

    def start(answer, unix=None):
        started.append(Peer(answer, unix))
        return started[-1]

    yield start
    for p in started:
        p.close()


def trickle(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for n in range(1000):
        conn.sendall(b"X-%d: a\r\n" % n)
        time.sleep(0.2)


def endless_headers(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for n in range(10 ** 6):
        conn.sendall(b"X-%d: %s\r\n" % (n, b"h" * 1000))


def huge_body(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
    for dummy in range(10 ** 6):
        conn.sendall(b"b" * 65536)


def trickled_body(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for dummy in range(1000):
        conn.sendall(b"b")
        time.sleep(0.2)


def ok(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


def timed(func, *args, **kwargs):
    started = time.monotonic()
    try:
        return func(*args, **kwargs), time.monotonic() - started
    except Exception as e:
        return e, time.monotonic() - started


def test_a_trickled_answer_ends_at_the_deadline(peer):
    port = peer(trickle).port
    error, seconds = timed(deadline_http.request, "127.0.0.1", port, "GET", "/healthz", timeout=1.0)
    assert isinstance(error, deadline_http.OutOfTime) and seconds < 1.0 + SLACK
    assert str(error) == "no complete answer within 1 s (the headers were still arriving)"


def test_a_trickled_body_ends_at_the_deadline_and_says_which_answer(peer):
    error, seconds = timed(deadline_http.request, "127.0.0.1", peer(trickled_body).port, "GET", "/", timeout=1.0)
    assert str(error) == "no complete answer within 1 s (HTTP 200 OK; the body was still arriving)"
    assert seconds < 1.0 + SLACK


def test_endless_headers_stop_at_the_header_cap(peer):
    error, seconds = timed(deadline_http.request, "127.0.0.1", peer(endless_headers).port, "GET", "/", timeout=5.0)
    assert isinstance(error, deadline_http.TooLarge) and str(error) == \
        "the status line and headers are larger than 64 KiB"
    assert seconds < 1.0


def test_a_huge_body_is_read_only_to_its_cap(peer):
    answer, seconds = timed(deadline_http.request, "127.0.0.1", peer(huge_body).port, "GET", "/", body_max=4096)
    assert (answer["status"], len(answer["body"])) == (200, 4096) and seconds < 1.0


def test_a_normal_answer_and_an_outer_deadline(peer):
    port = peer(ok).port
    answer = deadline_http.request("127.0.0.1", port, "GET", "/healthz")
    assert (answer["status"], answer["body"], answer["headers"]["content-length"]) == (200, b"ok", "2")
    spent = deadline_http.Deadline(0, why="the probe ran out of time")
    with pytest.raises(deadline_http.OutOfTime, match="^the probe ran out of time"):
        deadline_http.request("127.0.0.1", port, "GET", "/healthz", within=spent)


def test_over_a_unix_socket_the_same_deadline_and_caps_hold(peer, tmp_path):
    """gunicorn bound to unix:PATH: the exchange goes over the socket, with the one deadline and the caps."""
    answer = deadline_http.request("localhost", None, "GET", "/healthz", unix=str(peer(ok, str(tmp_path / "ok.sock")).listener.getsockname()))
    assert (answer["status"], answer["body"]) == (200, b"ok")
    trickling = str(tmp_path / "trickle.sock")
    peer(trickle, trickling)
    error, seconds = timed(deadline_http.request, "localhost", None, "GET", "/healthz", timeout=1.0, unix=trickling)
    assert isinstance(error, deadline_http.OutOfTime) and seconds < 1.0 + SLACK
    huge = str(tmp_path / "huge.sock")
    peer(huge_body, huge)
    answer = deadline_http.request("localhost", None, "GET", "/", body_max=4096, unix=huge)
    assert len(answer["body"]) == 4096


def test_a_stale_unix_socket_file_is_refused_and_a_missing_one_not_found(tmp_path):
    """A socket file whose listener is gone (gunicorn SIGKILLed) refuses; no file at all is ENOENT."""
    stale = str(tmp_path / "stale.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(stale)
    listener.close()
    with pytest.raises(ConnectionRefusedError):
        deadline_http.request("localhost", None, "GET", "/healthz", unix=stale)
    with pytest.raises(FileNotFoundError):
        deadline_http.request("localhost", None, "GET", "/healthz", unix=str(tmp_path / "none.sock"))


def test_a_caller_poll_shorter_than_the_deadline_stays_a_socket_timeout(peer):
    """websocket-client polls with a short timeout and retries: only the deadline may end the exchange."""
    p = peer(lambda conn: time.sleep(5))
    sock = deadline_http.BoundedSocket(socket.create_connection(("127.0.0.1", p.port)), deadline_http.Deadline(0.6))
    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
    sock.settimeout(0.05)
    with pytest.raises(socket.timeout) as polled:
        sock.recv(10)
    assert not isinstance(polled.value, deadline_http.OutOfTime)
    started = time.monotonic()
    with pytest.raises(deadline_http.OutOfTime, match=r"^no complete answer within 0.6 s \(not one byte"):
        while True:
            try:
                sock.recv(10)
            except deadline_http.OutOfTime:
                raise
            except socket.timeout:
                continue
    assert time.monotonic() - started < 0.6 + SLACK
    sock.close()


def test_a_tls_handshake_nobody_answers_ends_at_the_deadline(peer):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        error, seconds = timed(deadline_http.connect, ["127.0.0.1"], silent.getsockname()[1],
                               deadline_http.Deadline(0.8), ssl.create_default_context(), "localhost")
    assert isinstance(error, deadline_http.OutOfTime) and seconds < 0.8 + SLACK
    assert str(error) == "no complete answer within 0.8 s (the TLS handshake was still going on)"


def test_the_watchdog_wakes_a_library_blocked_in_recv(peer):
    p = peer(trickle)
    sock = socket.create_connection(("127.0.0.1", p.port))
    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
    dog = deadline_http.Watchdog(deadline_http.Deadline(0.5))
    dog.watch(sock)
    started = time.monotonic()
    with sock.makefile("rb") as f:
        while f.readline():     # a reader with no deadline of its own, as http.client under requests
            pass
    assert dog.fired and time.monotonic() - started < 0.5 + SLACK
    sock.close()


# --- the probes -----------------------------------------------------------------------------------------
def test_healthz_sample_of_a_trickling_peer_is_an_error_within_its_3_s(peer):
    port = peer(trickle).port
    sample, seconds = timed(healthz.sample, port, "/healthz")
    assert sample["status"] is None and seconds < healthz.TIMEOUT + SLACK
    assert sample["error"] == "no complete answer within 3 s (the headers were still arriving)"


def test_a_webhook_that_trickles_ends_within_its_3_s(peer):
    port = peer(trickle).port
    answer, seconds = timed(voice.post_form, port, "/incoming_call", {"CallSid": "CA1"}, "127.0.0.1:%d" % port, None,
                            None, "http://127.0.0.1")
    assert answer["status"] is None and answer["error"].startswith("no complete answer within 3 s")
    assert seconds < voice.HTTP_TIMEOUT + SLACK


def test_the_websocket_handshake_that_trickles_ends_within_its_3_s(peer):
    port = peer(trickle).port
    if voice.websocket_client() is None:
        pytest.skip("websocket-client is not installed")
    out, seconds = timed(voice.probe_websocket, port, "/ws", "127.0.0.1", "MZ1", "CA1", "AC1", {})
    assert out["status"] is None and seconds < voice.WS_TIMEOUT + SLACK
    assert out["error"] == "no complete handshake answer within 3 s (the handshake answer was still arriving)"


def test_the_controllers_https_check_ends_at_its_deadline_with_requests(peer):
    """requests reads the headers with a per-read timeout: the watchdog ends the exchange at the deadline."""
    port = peer(trickle).port
    result, seconds = timed(external.check_https, "http://127.0.0.1:%d/healthz" % port, None, True, 1.0)
    assert (result["error_class"], result["error"]) == (
        "timeout", "no complete answer within 1 s (the headers were still arriving)")
    assert seconds < 1.0 + SLACK


@pytest.mark.parametrize("answer, error_class, error", [
    (trickle, "timeout", "no complete handshake answer within 1 s (the handshake answer was still arriving)"),
    (endless_headers, "connection", "TooLarge: " + deadline_http.HANDSHAKE_TOO_LARGE),
    (huge_body, "connection", "TooLarge: " + deadline_http.HANDSHAKE_TOO_LARGE),
])
def test_the_controllers_wss_check_ends_at_its_deadline_and_caps(peer, answer, error_class, error):
    port = peer(answer).port
    result, seconds = timed(external.check_wss, "ws://127.0.0.1:%d/ws" % port, None, True, 1.0, ["127.0.0.1"])
    assert (result["error_class"], result["error"]) == (error_class, error)
    assert seconds < 1.0 + SLACK


def test_describing_the_certificate_of_a_server_that_never_finishes_the_handshake_ends_at_the_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        found, seconds = timed(external.fetch_certificate, "voice.test", silent.getsockname()[1], "127.0.0.1", 0.8)
    assert found == {"error": "no complete answer within 0.8 s (the TLS handshake was still going on)"}
    assert seconds < 0.8 + SLACK


# --- the probe's own deadline --------------------------------------------------------------------------------
def test_a_probe_still_running_at_the_probe_deadline_is_left_behind_and_named():
    deadline = deadline_http.Deadline(0.3, why="the probe ran out of time")
    late = {}
    stuck = host_probe.Task(time.sleep, 30)
    quick = host_probe.Task(lambda: {"samples": []})
    started = time.monotonic()
    assert stuck.result(deadline, "voice", late) is None
    assert quick.result(deadline, "healthz", late) == {"samples": []}
    assert time.monotonic() - started < 0.3 + SLACK
    assert late == {"voice": "the probe ran out of time: this probe had not finished, its facts are missing"}


def test_a_layer_that_ran_out_of_time_is_a_warning_in_the_report():
    layer = verdict.Layer("voice", {})
    verdict._judge_one({"ran_out_of_time": {"voice": "the probe ran out of time: ..."}}, "voice", None, layer)
    assert layer.result() == {"name": "voice", "status": "warn", "checks": [
        {"name": "probe finished", "status": "warn", "detail": "the probe ran out of time: ..."}]}


@pytest.mark.parametrize("window, boot", [(15, 30), (3, 5), (120, 90)])
def test_the_probe_tasks_timeout_is_the_probes_budget_plus_30_s(window, boot):
    """roles/diagnose/vars/main.yml computes the task's timeout; host_probe.time_budget() the probe's own deadline:
    the task must never kill a probe that is still within its budget."""
    vars_file = Path(host_probe.__file__).resolve().parents[3] / "roles" / "diagnose" / "vars" / "main.yml"
    expression = yaml.safe_load(vars_file.read_text())["__diagnose_probe_timeout"]
    rendered = jinja2.Template(expression).render(doctor_stability_window=str(window), doctor_boot_timeout=str(boot))
    assert int(rendered) == host_probe.time_budget({"stability_window": window, "boot_timeout": boot}) + 30
