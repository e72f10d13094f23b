"""plugins/plugin_utils/external_probe.py: the pure parts (URL, where the URL comes from, error classes,
the bounded DNS lookup, the target's addresses). The network parts run against real nginx in
tests/integration/test_diagnose_external.py."""

import errno
import socket
import ssl
import threading

import pytest
import requests
import urllib3
import websocket

from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils import external_probe as external


# --- the URL ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url, scheme, host, port, base", [
    ("https://voice.example.com", "https", "voice.example.com", 443, "https://voice.example.com"),
    ("https://voice.example.com/", "https", "voice.example.com", 443, "https://voice.example.com"),
    ("voice.example.com", "https", "voice.example.com", 443, "https://voice.example.com"),
    ("https://voice.example.com:8443/agent/", "https", "voice.example.com", 8443, "https://voice.example.com:8443/agent"),
    ("http://127.0.0.1:8080", "http", "127.0.0.1", 8080, "http://127.0.0.1:8080"),
    ("wss://voice.example.com", "https", "voice.example.com", 443, "https://voice.example.com"),
    ("https://[::1]:8443", "https", "::1", 8443, "https://[::1]:8443"),
])
def test_split_base_url(url, scheme, host, port, base):
    parts = external.split_base_url(url)
    assert (parts["scheme"], parts["host"], parts["port"], parts["base"]) == (scheme, host, port, base)


@pytest.mark.parametrize("url, message", [
    ("", "is empty"),
    ("ftp://voice.example.com", "has scheme 'ftp'"),
    ("https://", "has no host name"),
    ("https://voice.example.com:80x", "has an invalid port"),
    ("https://voice.example.com/?a=1", "carries a query"),
])
def test_split_base_url_rejects(url, message):
    with pytest.raises(external.UrlError, match=message.replace("?", r"\?")):
        external.split_base_url(url)


def test_join_url_never_makes_a_double_slash():
    parts = external.split_base_url("https://voice.example.com:8443/agent/")
    assert external.join_url(parts, "/healthz") == "https://voice.example.com:8443/agent/healthz"
    assert external.join_url(parts, "/ws/twilio-media", "wss") == "wss://voice.example.com:8443/agent/ws/twilio-media"
    root = external.split_base_url("https://voice.example.com/")
    assert external.join_url(root, "/ws/twilio-media", "wss") == "wss://voice.example.com/ws/twilio-media"


def test_public_base_url_prefers_the_argument_then_the_voice_probe():
    voice = {"voice": {"public_base_url": "https://from-env.example.com",
                       "public_base_url_source": "PUBLIC_BASE_URL in the environment of master 4242"}}
    assert external.public_base_url("https://arg.example.com", voice) == ("https://arg.example.com", "doctor_public_base_url")
    assert external.public_base_url(None, voice) == ("https://from-env.example.com",
                                                     "PUBLIC_BASE_URL in the environment of master 4242")
    assert external.public_base_url(None, {"voice": {"public_base_url": None}}) == (None, None)
    assert external.public_base_url("", {}) == (None, None)


def test_skip_reason_says_how_to_enable_the_layer():
    plain = external.skip_reason({"env_names": ["PATH", "PORT"]})
    assert "doctor_public_base_url" in plain and "PUBLIC_BASE_URL in the service environment" in plain
    with_env = external.skip_reason({"env_names": ["PORT", "PUBLIC_BASE_URL"]})
    assert "PUBLIC_BASE_URL is set in the service environment" in with_env and "doctor_public_base_url" in with_env


def test_missing_libraries_give_the_pip_command(monkeypatch):
    monkeypatch.setattr(external, "HAS_WEBSOCKET", False)
    monkeypatch.setattr(external.sys, "executable", "/opt/ansible/bin/python")
    assert external.missing_libraries() == {"websocket-client": "/opt/ansible/bin/python -m pip install websocket-client"}
    result = external.check_wss("wss://voice.example.com/ws/twilio-media", None, True, 1.0)
    assert result["not_run"] == ("websocket-client is not installed on the controller: "
                                 "/opt/ansible/bin/python -m pip install websocket-client")


# --- error classes --------------------------------------------------------------------------------------------
def verify_error(code, message):
    e = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: %s" % message)
    e.verify_code, e.verify_message = code, message
    return e


def wrapped_by_requests(inner):
    """What requests raises: requests.ConnectionError(MaxRetryError(reason=NewConnectionError from inner))."""
    wrapper = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection: %s" % inner)
    wrapper.__cause__ = inner
    return requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/healthz", reason=wrapper))


def test_classify_certificate_errors():
    c = external.classify(requests.exceptions.SSLError(verify_error(20, "unable to get local issuer certificate")))
    assert (c["error_class"], c["tls_kind"], c["verify_code"]) == ("tls", "verify", 20)
    assert c["error"] == "certificate verify failed: unable to get local issuer certificate"
    c = external.classify(verify_error(62, "Hostname mismatch, certificate is not valid for 'voice.example.com'."))
    assert c["tls_kind"] == "hostname"


def test_classify_plain_http_behind_an_https_url():
    c = external.classify(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"))
    assert (c["error_class"], c["tls_kind"]) == ("tls", "plaintext")


@pytest.mark.parametrize("inner, expected", [
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "refused"),
    (socket.timeout("timed out"), "timeout"),
    (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable"),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "reset"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns"),
])
def test_classify_connection_errors_through_requests_wrapping(inner, expected):
    assert external.classify(wrapped_by_requests(inner))["error_class"] == expected


def test_classify_timeouts_of_both_libraries():
    assert external.classify(requests.exceptions.ReadTimeout("read timeout=5"))["error_class"] == "timeout"
    assert external.classify(websocket.WebSocketTimeoutException("timed out"))["error_class"] == "timeout"
    assert external.classify(TimeoutError("_ssl.c:989: The handshake operation timed out"))["error_class"] == "timeout"


def test_classify_unknown_errors_keep_their_text():
    c = external.classify(ValueError("something odd"))
    assert c == {"error_class": "connection", "error": "ValueError: something odd"}


# --- DNS and addresses ---------------------------------------------------------------------------------------
def test_resolve_literal_needs_no_lookup():
    def fail(*args):
        raise AssertionError("no lookup for an IP literal")
    assert external.resolve("127.0.0.1", 443, 1.0, fail)["addresses"] == ["127.0.0.1"]
    assert external.resolve("::1", 443, 1.0, fail)["addresses"] == ["::1"]


def test_resolve_names_the_resolver_error():
    def nxdomain(*args):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    found = external.resolve("voice.invalid", 443, 1.0, nxdomain)
    assert found["addresses"] == []
    assert found["error"] == "Name or service not known (EAI_NONAME)"


def test_resolve_is_bounded_by_the_timeout():
    release = threading.Event()

    def stuck(*args):
        release.wait(5)
        return []
    try:
        found = external.resolve("slow.example.com", 443, 0.2, stuck)
    finally:
        release.set()
    assert found["error"] == "no answer from the resolver within 0.2 s"
    assert found["seconds"] < 1


def test_resolve_keeps_each_address_once_in_order():
    def two(*args):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.113.10", 443)),
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::10", 443, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.113.10", 443))]
    assert external.resolve("voice.example.com", 443, 1.0, two)["addresses"] == ["203.0.113.10", "2001:db8::10"]


def test_target_addresses():
    local = external.target_addresses("local", "localhost")
    assert local["local"] is True and "127.0.0.1" in local["addresses"]
    assert local["how"] == "ansible_connection=local: the target is this controller"

    def web1(*args):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("198.51.100.7", 22))]
    remote = external.target_addresses("ssh", "web1.example.com", resolver=web1)
    assert remote == {"addresses": ["198.51.100.7"], "local": False, "how": "ansible_host=web1.example.com -> 198.51.100.7"}
    gathered = external.target_addresses("ssh", "198.51.100.7", known=["10.0.0.7"])
    assert gathered["addresses"] == ["10.0.0.7", "198.51.100.7"]
    assert gathered["how"] == "ansible_host=198.51.100.7 and gathered facts"


def test_trust_store_names_what_verifies(monkeypatch, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert external.trust_store(str(ca), True) == (str(ca), "doctor_ca_bundle=%s" % ca)
    assert external.trust_store(str(ca), False) == (None, "not verified (doctor_validate_certs=false)")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    assert external.trust_store(None, True) == (str(ca), "REQUESTS_CA_BUNDLE=%s" % ca)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    path, source = external.trust_store(None, True)
    assert path == requests.certs.where() and source.startswith("the certifi bundle of requests")


def test_collect_records_a_malformed_url_without_probing():
    facts = external.collect("ftp://voice.example.com", "PUBLIC_BASE_URL in doctor_env_file /srv/app.env")
    assert facts["url_error"] == "'ftp://voice.example.com' has scheme 'ftp': use https://HOST (Twilio needs https and wss)"
    assert facts["https"] is None and facts["wss"] is None


def test_collect_with_a_name_that_does_not_resolve_probes_nothing():
    def nxdomain(*args):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    facts = external.collect("https://voice.invalid", "doctor_public_base_url", resolver=nxdomain)
    for result in (facts["https"], facts["wss"]):
        assert result["error_class"] == "dns"
        assert result["error"] == "voice.invalid does not resolve: Name or service not known (EAI_NONAME)"
    assert facts["https"]["url"] == "https://voice.invalid/healthz"
    assert facts["wss"]["url"] == "wss://voice.invalid/ws/twilio-media"


@pytest.mark.parametrize("url, expected", [
    ("https://user:s3cret@voice.example.com/agent", "https://<redacted>@voice.example.com/agent"),
    ("user:s3cret@voice.example.com", "<redacted>@voice.example.com"),
    ("https://voice.example.com/a@b", "https://voice.example.com/a@b"),
])
def test_userinfo_never_reaches_the_facts(url, expected):
    assert external.without_userinfo(url) == expected


def test_collect_keeps_no_password_of_the_url():
    def nxdomain(*args):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    facts = external.collect("https://user:s3cret@voice.invalid", "doctor_public_base_url", resolver=nxdomain)
    assert "s3cret" not in repr(facts)
    assert facts["base_url"] == "https://voice.invalid"
    assert "s3cret" not in repr(external.collect("https://user:s3cret@voice.invalid:8x", "PUBLIC_BASE_URL"))


def test_a_library_that_is_installed_but_fails_to_import_is_named_so(tmp_path, monkeypatch):
    (tmp_path / "doctor_broken_lib.py").write_text("raise RuntimeError('needs OpenSSL 3')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert external._load("doctor_broken_lib") is None
    reason = external._unusable("broken-lib", "doctor_broken_lib")
    assert "is installed on the controller but does not import (RuntimeError: needs OpenSSL 3)" in reason
    assert external._unusable("requests", "no_such_module_here").startswith("requests is not installed")
