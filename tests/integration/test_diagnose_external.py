"""The external layer for real: nginx (Debian's package) terminating TLS in front of gunicorn, with a
CA and a server certificate made by the test, probed over https and wss by the report action on the
controller through diagnose.yml. Loopback only; every process is stopped by its PID.

The probe-level tests at the end call probes/external.py directly (no playbook) for the failures that
need no gunicorn: a certificate for another name, a port that accepts but never answers, a port that
speaks plain HTTP, and the two checks running at once.
"""

import socket
import sys
import threading
import time

import pytest

from doctor_run import ROOT, cause, cause_ids, diagnose, layer, make_app, run_playbook
from gunicorn_service import free_port
from tls_proxy import NginxTLSProxy, make_pki

# The probe is imported by its collection name, as the action plugin does: scripts/bootstrap.sh links
# this checkout as .collections/ansible_collections/sre/gunicorn_doctor (see tests/unit/conftest.py).
if str(ROOT / ".collections") not in sys.path:
    sys.path.insert(0, str(ROOT / ".collections"))
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils import external_probe as probe  # noqa: E402

TWILIO_SUBPROTOCOL = "audio.twilio.com"


@pytest.fixture
def pki(tmp_path):
    return make_pki(str(tmp_path / "pki"))


@pytest.fixture
def proxies(tmp_path, pki):
    """Start nginx proxies for a test; each is stopped by its PID afterwards."""
    started = []

    def start(upstream, websocket=True, port=None):
        proxy = NginxTLSProxy(tmp_path / ("nginx%d" % len(started)), pki, port or free_port(), upstream,
                              websocket=websocket)
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in reversed(started):
        proxy.stop()


def app_behind_proxy(services, proxies, tmp_path, port, websocket=True, upstream=None):
    """The demo app on 0.0.0.0:$PORT and nginx on 127.0.0.1:<free port> forwarding to `upstream` (default $PORT).
    The service's PUBLIC_BASE_URL is the proxy's URL, as a real deployment sets it."""
    proxy_port = free_port()
    public = "https://127.0.0.1:%d" % proxy_port
    service = services(make_app(tmp_path), tmp_path / "gunicorn.log", bind="0.0.0.0:%d" % port,
                       env={"PORT": str(port), "PUBLIC_BASE_URL": public})
    proxy = proxies(upstream or port, websocket=websocket, port=proxy_port)
    return service, proxy


def external_vars(service, tmp_path, **extra):
    return dict({"doctor_chdir": str(service.app_dir), "doctor_log_file": str(tmp_path / "gunicorn.log")}, **extra)


def check(report, name):
    return next(c for c in layer(report, "external")["checks"] if c["name"] == name)


def assert_local_layers_pass(report):
    assert [(l["name"], l["status"]) for l in report["layers"][:6]] == [
        (name, "pass") for name in ("port", "process", "listen", "healthz", "boot", "system")], report["causes"]


# --- through diagnose.yml ---------------------------------------------------------------------------------
def test_healthy_app_behind_the_tls_proxy(services, proxies, pki, tmp_path, port):
    service, proxy = app_behind_proxy(services, proxies, tmp_path, port)
    report, out = diagnose(tmp_path, external_vars(service, tmp_path, doctor_public_base_url=proxy.url(),
                                                   doctor_ca_bundle=pki["ca"]))
    ext = layer(report, "external")
    assert ext["status"] == "pass", ext
    assert check(report, "https healthz")["detail"].startswith("%s/healthz -> 200 OK" % proxy.url())
    assert "Server: nginx/" in check(report, "https healthz")["detail"]
    assert "same body as on 127.0.0.1:%d" % port in check(report, "https healthz")["detail"]
    assert check(report, "wss handshake")["detail"].startswith(
        "wss://127.0.0.1:%d/ws/twilio-media -> 101, Sec-WebSocket-Protocol: %s echoed" % (proxy.port, TWILIO_SUBPROTOCOL))
    assert "doctor_ca_bundle=%s" % pki["ca"] in check(report, "public URL")["detail"]
    assert "external_unreachable" not in cause_ids(report)
    assert report["verdict"] == "healthy", report["causes"]
    assert report["failed_layer"] is None
    assert "changed=0" in out
    assert report["timings"]["external"] < 2, report["timings"]   # both checks, at once, on loopback


def test_public_url_from_the_services_public_base_url(services, proxies, pki, tmp_path, port):
    """No doctor_public_base_url: the URL is the PUBLIC_BASE_URL the voice probe read from the running master."""
    service, proxy = app_behind_proxy(services, proxies, tmp_path, port)
    report = diagnose(tmp_path, external_vars(service, tmp_path, doctor_ca_bundle=pki["ca"]))[0]
    url_check = check(report, "public URL")
    if url_check["status"] == "skip" and "not probed yet" in layer(report, "voice")["checks"][0].get("detail", ""):
        pytest.skip("the voice probe does not report public_base_url yet")
    assert layer(report, "external")["status"] == "pass", layer(report, "external")
    assert url_check["detail"].startswith("%s (PUBLIC_BASE_URL in the environment of master %d" % (proxy.url(), service.pid))
    assert "external_unreachable" not in cause_ids(report)


def test_proxy_pointed_at_the_wrong_port(services, proxies, pki, tmp_path, port):
    wrong = free_port()      # nothing listens there: nginx answers 502 Bad Gateway
    service, proxy = app_behind_proxy(services, proxies, tmp_path, port, upstream=wrong)
    report, out = diagnose(tmp_path, external_vars(service, tmp_path, doctor_public_base_url=proxy.url(),
                                                   doctor_ca_bundle=pki["ca"]))
    assert_local_layers_pass(report)
    assert report["verdict"] == "degraded"
    assert report["failed_layer"] == "external"
    found = cause(report, "external_unreachable")
    assert (found["severity"], found["runbook_cause"], found["twilio_error"]) == ("fail", 7, 31920)
    first = found["evidence"][0]
    assert first.startswith("runbook cause 7: the proxy at 127.0.0.1:%d (Server: nginx/" % proxy.port)
    assert "answers 502 Bad Gateway for %s/healthz while the app answers 200 on 127.0.0.1:%d" % (proxy.url(), port) in first
    assert "$PORT=%d" % port in first
    assert any("the app listens on 0.0.0.0:%d (master %d)" % (port, service.pid) in e for e in found["evidence"])
    assert "proxy_pass http://127.0.0.1:%d;" % port in found["remedy"]
    assert "--cacert %s" % pki["ca"] in found["remedy"]
    assert "target: DEGRADED - first failing layer: external" in out
    # nginx really tried the wrong upstream: its own error log names it.
    assert "127.0.0.1:%d" % wrong in proxy.error_log()


def test_private_ca_without_a_bundle_is_a_tls_finding(services, proxies, pki, tmp_path, port):
    service, proxy = app_behind_proxy(services, proxies, tmp_path, port)
    report = diagnose(tmp_path, external_vars(service, tmp_path, doctor_public_base_url=proxy.url()))[0]
    assert_local_layers_pass(report)
    assert report["verdict"] == "degraded" and report["failed_layer"] == "external"
    found = cause(report, "external_unreachable")
    assert (found["runbook_cause"], found["twilio_error"]) == (None, 31910)
    assert "unable to get local issuer certificate" in found["evidence"][0]
    assert "Twilio error 31910 (TLS handshake error)" in found["evidence"][0]
    cert = next(e for e in found["evidence"] if e.startswith("certificate presented:"))
    assert "subject CN=voice.test" in cert and "issuer CN=gunicorn_doctor test CA" in cert
    assert "DNS:voice.test, IP:127.0.0.1" in cert
    assert "doctor_ca_bundle" in found["remedy"]
    assert check(report, "wss handshake")["status"] == "fail"


def test_public_url_on_a_closed_port_is_refused(services, tmp_path, port):
    service = services(make_app(tmp_path), tmp_path / "gunicorn.log", bind="0.0.0.0:%d" % port, env={"PORT": str(port)})
    closed = free_port()
    report = diagnose(tmp_path, external_vars(service, tmp_path, doctor_public_base_url="https://127.0.0.1:%d" % closed))[0]
    assert_local_layers_pass(report)
    assert report["verdict"] == "degraded" and report["failed_layer"] == "external"
    found = cause(report, "external_unreachable")
    assert (found["runbook_cause"], found["twilio_error"]) == (10, 31902)
    assert found["evidence"][0].startswith(
        "runbook cause 10: 127.0.0.1 is a loopback address and 127.0.0.1:%d refuses the connection" % closed)
    assert "Twilio error 31902 (connection refused)" in found["evidence"][0]
    assert "ansible_connection=local" in " ".join(found["evidence"])


def test_proxy_without_websocket_upgrade_headers(services, proxies, pki, tmp_path, port):
    service, proxy = app_behind_proxy(services, proxies, tmp_path, port, websocket=False)
    report = diagnose(tmp_path, external_vars(service, tmp_path, doctor_public_base_url=proxy.url(),
                                              doctor_ca_bundle=pki["ca"]))[0]
    assert check(report, "https healthz")["status"] == "pass"
    assert check(report, "wss handshake")["status"] == "fail"
    found = cause(report, "external_unreachable")
    assert (found["runbook_cause"], found["twilio_error"]) == (7, 31920)
    assert "gets 400 instead of 101" in found["evidence"][0]
    assert "proxy_set_header Upgrade $http_upgrade" in found["remedy"]


def test_a_ca_bundle_that_is_not_a_file_is_an_input_error(services, tmp_path, port):
    service = services(make_app(tmp_path), tmp_path / "gunicorn.log", bind="0.0.0.0:%d" % port, env={"PORT": str(port)})
    done = run_playbook("diagnose.yml", tmp_path, external_vars(
        service, tmp_path, doctor_public_base_url="https://127.0.0.1:%d" % free_port(),
        doctor_ca_bundle=str(tmp_path / "missing-ca.pem")), check=False)
    assert done.returncode != 0
    assert "doctor_ca_bundle='%s' is not a file on the controller" % (tmp_path / "missing-ca.pem") in done.stdout


# --- probes/external.py against real sockets, no playbook -------------------------------------------------
def collect(url, **kwargs):
    kwargs.setdefault("timeout", 2.0)
    return probe.collect(url, "test", **kwargs)


def test_certificate_for_another_name(services, proxies, pki, tmp_path, port):
    proxy = app_behind_proxy(services, proxies, tmp_path, port)[1]
    # `localhost` is not in the certificate (voice.test, IP:127.0.0.1): a name that leads to the wrong vhost.
    facts = collect("https://localhost:%d" % proxy.port, ca_bundle=pki["ca"])
    for result in (facts["https"], facts["wss"]):
        assert (result["error_class"], result["tls_kind"], result["verify_code"]) == ("tls", "hostname", 62)
        assert "Hostname mismatch, certificate is not valid for 'localhost'" in result["verify_message"]
    assert facts["certificate"]["names"] == ["DNS:voice.test", "IP:127.0.0.1"]
    assert facts["certificate"]["self_signed"] is False


def test_a_port_that_accepts_but_never_answers_times_out_once_for_both_checks():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)       # the kernel completes the handshake; nobody ever reads or answers
        started = time.monotonic()
        facts = collect("https://127.0.0.1:%d" % silent.getsockname()[1], timeout=1.0)
        elapsed = time.monotonic() - started
    assert facts["https"]["error_class"] == "timeout" and facts["wss"]["error_class"] == "timeout"
    assert elapsed < 1.9, "the two checks ran one after the other (%.1f s)" % elapsed


def test_https_to_a_plain_http_port():
    """A plain-HTTP listener answering the TLS ClientHello with an HTTP error, as nginx's and most
    servers' plain ports do."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _addr = listener.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        facts = collect("https://127.0.0.1:%d" % listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    for result in (facts["https"], facts["wss"]):
        assert (result["error_class"], result["tls_kind"]) == ("tls", "plaintext"), result
