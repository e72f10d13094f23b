"""plugins/module_utils/judges/external.py: facts['external'] (recorded from real runs of
probes/external.py against nginx in front of gunicorn) -> the external layer, its cause and the verdict.

Every report goes through test_verdict.diagnose(), which validates it against the contract's schema and
checks the report invariants (ladder order, failed_layer, cause order, filled remedies).
"""

import copy

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact
from test_verdict import PORT, MASTER, check, diagnose, healthy_facts, ids, layer, stop_service

PROXY = 8443
URL = "https://voice.example.com"
PUBLIC_IP = "203.0.113.10"          # documentation range: what voice.example.com resolves to
SERVER_IP = "198.51.100.7"          # the target (ansible_host)
NGINX = "nginx/1.22.1"
BODY = '{"status":"ok"}\n'
CERT = {"subject": "CN=voice.example.com,O=gunicorn_doctor tests",
        "issuer": "CN=gunicorn_doctor test CA,O=gunicorn_doctor tests",
        "names": ["DNS:voice.example.com", "IP:127.0.0.1"], "not_after": "2026-11-26 13:10:14 UTC",
        "self_signed": False, "tls_version": "TLSv1.3"}
NO_ISSUER = {"error_class": "tls", "tls_kind": "verify", "verify_code": 20,
             "verify_message": "unable to get local issuer certificate",
             "error": "certificate verify failed: unable to get local issuer certificate"}


def result(url, **values):
    r = {"url": url, "ok": False, "status": None, "reason": None, "latency_ms": 3.1, "peer": None, "server": None,
         "error_class": None, "error": None, "not_run": None}
    r.update(values)
    return r


def https_ok(base=URL, peer="%s:443" % PUBLIC_IP):
    return result(base + "/healthz", ok=True, status=200, reason="OK", peer=peer, server=NGINX, location=None, body=BODY)


def wss_ok(base=URL, peer="%s:443" % PUBLIC_IP):
    return result(base.replace("https", "wss", 1) + "/ws/twilio-media", ok=True, status=101, peer=peer, server=NGINX,
                  subprotocol="audio.twilio.com")


def external(base=URL, addresses=(PUBLIC_IP,), target=None, https=None, wss=None, dns_error=None, certificate=None,
             ca_bundle=None, validate_certs=True, source="doctor_public_base_url"):
    scheme, _sep, rest = base.partition("://")
    host, _sep, port = rest.partition(":")
    port = int(port) if port else (443 if scheme == "https" else 80)
    return {
        "base_url": base, "source": source, "timeout": 5.0, "validate_certs": validate_certs, "ca_bundle": ca_bundle,
        "target": target or {"addresses": [SERVER_IP, PUBLIC_IP], "local": False,
                             "how": "ansible_host=%s and gathered facts" % SERVER_IP},
        "url_error": None, "scheme": scheme, "host": host, "port": port,
        "trust": ("doctor_ca_bundle=%s" % ca_bundle) if ca_bundle else "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt",
        "dns": {"addresses": [] if dns_error else list(addresses), "error": dns_error, "seconds": 0.01},
        "https": https or https_ok(base), "wss": wss or wss_ok(base), "certificate": certificate, "elapsed": 0.02,
    }


@pytest.fixture
def facts(tmp_path):
    return healthy_facts(tmp_path)


def external_cause(report):
    found = [c for c in report["causes"] if c["id"] == "external_unreachable"]
    assert len(found) == 1, ids(report)
    return found[0]


def assert_degraded_by_external(report):
    assert report["verdict"] == "degraded"
    assert report["failed_layer"] == "external"
    assert [l["status"] for l in report["layers"][:6]] == ["pass"] * 6
    assert layer(report, "external")["status"] == "fail"
    assert ids(report) == ["external_unreachable"]
    # redact() runs over every report: nothing in this layer's text looks like a secret to it.
    assert redact(copy.deepcopy(report)) == report


# --- passes and skips ------------------------------------------------------------------------------------
def test_public_url_reaches_the_app(facts):
    facts["external"] = external()
    report = diagnose(facts)
    assert report["verdict"] == "healthy"
    assert report["causes"] == []
    ext = layer(report, "external")
    assert ext["status"] == "pass"
    assert [c["name"] for c in ext["checks"]] == ["public URL", "https healthz", "wss handshake"]
    assert "https://voice.example.com (doctor_public_base_url)" in check(report, "external", "public URL")["detail"]
    assert "the server itself" in check(report, "external", "public URL")["detail"]
    assert check(report, "external", "https healthz")["detail"].startswith(
        "https://voice.example.com/healthz -> 200 OK in 3 ms from 203.0.113.10:443 (Server: nginx/1.22.1)")
    assert "same body as on 127.0.0.1:%d" % PORT in check(report, "external", "https healthz")["detail"]
    assert "Sec-WebSocket-Protocol: audio.twilio.com echoed" in check(report, "external", "wss handshake")["detail"]


def test_private_ca_bundle_passes_with_a_note(facts):
    facts["external"] = external(ca_bundle="/srv/pki/ca.pem")
    report = diagnose(facts)
    assert report["verdict"] == "healthy"
    detail = check(report, "external", "public URL")["detail"]
    assert "TLS verification against doctor_ca_bundle=/srv/pki/ca.pem (Twilio trusts public CAs only)" in detail


def test_no_public_url_skips_and_says_how_to_enable(facts):
    facts["env_names"] = ["PATH", "PORT"]
    from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils import external_probe as probe
    facts["external"] = {"skipped": probe.skip_reason(facts)}
    report = diagnose(facts)
    assert report["verdict"] == "healthy"
    ext = layer(report, "external")
    assert ext["status"] == "skip"
    assert "doctor_public_base_url" in ext["checks"][0]["detail"] and "PUBLIC_BASE_URL" in ext["checks"][0]["detail"]


def test_facts_without_the_external_layer_skip(facts):
    report = diagnose(facts)
    assert layer(report, "external")["status"] == "skip"
    assert "sre.gunicorn_doctor.report" in layer(report, "external")["checks"][0]["detail"]


def test_missing_library_skips_only_its_check(facts):
    pip = "/usr/bin/python3 -m pip install websocket-client"
    facts["external"] = external(wss=result("wss://voice.example.com/ws/twilio-media",
                                            not_run="websocket-client is not installed on the controller: " + pip))
    report = diagnose(facts)
    assert report["verdict"] == "healthy"
    assert check(report, "external", "wss handshake")["status"] == "skip"
    assert pip in check(report, "external", "wss handshake")["detail"]
    assert check(report, "external", "https healthz")["status"] == "pass"


def test_http_base_url_warns_that_twilio_needs_wss(facts):
    base = "http://voice.example.com"
    facts["external"] = external(base=base, https=https_ok(base, "%s:80" % PUBLIC_IP), wss=wss_ok(base, "%s:80" % PUBLIC_IP))
    report = diagnose(facts)
    assert check(report, "external", "public URL")["status"] == "warn"
    assert "31922" in check(report, "external", "public URL")["detail"]
    assert report["causes"] == []


# --- runbook cause 7: the proxy / port mismatch ---------------------------------------------------------
def test_proxy_answers_502_is_cause_7(facts):
    body = "<html>\r\n<head><title>502 Bad Gateway</title></head>"
    facts["external"] = external(
        https=result(URL + "/healthz", status=502, reason="Bad Gateway", peer="%s:443" % PUBLIC_IP, server=NGINX,
                     error_class="http_status", error="HTTP 502 Bad Gateway", body=body, location=None),
        wss=result("wss://voice.example.com/ws/twilio-media", status=502, reason="Bad Gateway", server=NGINX,
                   error_class="http_status", error="handshake answered 502, not 101", body=body))
    report = diagnose(facts)
    assert_degraded_by_external(report)
    c = external_cause(report)
    assert (c["severity"], c["runbook_cause"], c["twilio_error"], c["runbook_step"]) == ("fail", 7, 31920, "0")
    assert c["evidence"][0].startswith("runbook cause 7: the proxy at 203.0.113.10:443 (Server: nginx/1.22.1) "
                                       "answers 502 Bad Gateway for https://voice.example.com/healthz while the app "
                                       "answers 200 on 127.0.0.1:8123")
    assert "$PORT=8123" in c["evidence"][0] and "Twilio error 31920" in c["evidence"][0]
    assert "from the controller: wss://voice.example.com/ws/twilio-media -> 502 Bad Gateway" in c["evidence"][2]
    assert any(e.startswith("on the server: http://127.0.0.1:8123/healthz answers 200 (healthz layer); the app "
                            "listens on 0.0.0.0:8123 (master %d)" % MASTER) for e in c["evidence"])
    assert "proxy_pass http://127.0.0.1:8123;" in c["remedy"]
    assert "curl -sS -m 5 -i https://voice.example.com/healthz" in c["remedy"]
    assert 'wscat -c wss://voice.example.com/ws/twilio-media -H "Sec-WebSocket-Protocol: audio.twilio.com"' in c["remedy"]
    assert check(report, "external", "https healthz")["status"] == "fail"


def test_refused_on_the_servers_own_address_is_cause_7(facts):
    refused = {"error_class": "refused", "error": "connection refused"}
    facts["external"] = external(https=result(URL + "/healthz", **refused),
                                 wss=result("wss://voice.example.com/ws/twilio-media", **refused))
    c = external_cause(diagnose(facts))
    assert (c["runbook_cause"], c["twilio_error"]) == (7, 31902)
    assert "203.0.113.10:443:443" not in c["evidence"][0]
    assert c["evidence"][0].startswith("runbook cause 7: 203.0.113.10:443 refuses the connection (nothing listens "
                                       "there) although it is the server's address")
    assert "Twilio error 31902 (connection refused)" in c["evidence"][0]
    assert "ss -ltnp | grep :443" in c["remedy"] and "forward to 127.0.0.1:8123" in c["remedy"]


def test_https_to_the_apps_plain_http_port_times_out_in_the_handshake(facts):
    base = "https://voice.example.com:%d" % PORT
    timeout = {"error_class": "timeout", "error": "no answer: _ssl.c:989: The handshake operation timed out"}
    facts["external"] = external(base=base, https=result(base + "/healthz", **timeout),
                                 wss=result("wss://voice.example.com:%d/ws/twilio-media" % PORT, **timeout))
    c = external_cause(diagnose(facts))
    assert (c["runbook_cause"], c["twilio_error"]) == (7, 31901)
    assert "8123 is the app's own $PORT, where gunicorn speaks plain HTTP, not TLS" in c["evidence"][0]


def test_websocket_upgrade_blocked_by_the_proxy_is_cause_7(facts):
    facts["external"] = external(wss=result(
        "wss://voice.example.com/ws/twilio-media", status=400, reason="BAD REQUEST", server=NGINX,
        error_class="http_status", error="handshake answered 400, not 101", body="<title>400 Bad Request</title>"))
    report = diagnose(facts)
    assert_degraded_by_external(report)
    c = external_cause(report)
    assert (c["runbook_cause"], c["twilio_error"]) == (7, 31920)
    assert "https reaches the app through" in c["evidence"][0] and "gets 400 instead of 101" in c["evidence"][0]
    assert "proxy_set_header Upgrade $http_upgrade" in c["remedy"]
    assert check(report, "external", "https healthz")["status"] == "pass"


def test_subprotocol_not_echoed(facts):
    facts["external"] = external(wss=result(
        "wss://voice.example.com/ws/twilio-media", status=101, peer="%s:443" % PUBLIC_IP, subprotocol=None,
        error_class="no_subprotocol", error="101 without Sec-WebSocket-Protocol: audio.twilio.com echoed (got None)"))
    c = external_cause(diagnose(facts))
    assert (c["runbook_cause"], c["twilio_error"], c["runbook_step"]) == (None, 31920, "5.2")
    assert "SOCK_SERVER_OPTIONS" in c["remedy"]


# --- runbook cause 10: the wrong host --------------------------------------------------------------------
def test_name_that_does_not_resolve_is_cause_10(facts):
    dns = {"error_class": "dns", "error": "voice.example.com does not resolve: Name or service not known (EAI_NONAME)"}
    facts["external"] = external(dns_error="Name or service not known (EAI_NONAME)",
                                 https=result(URL + "/healthz", **dns),
                                 wss=result("wss://voice.example.com/ws/twilio-media", **dns))
    report = diagnose(facts)
    assert_degraded_by_external(report)
    c = external_cause(report)
    assert (c["runbook_cause"], c["twilio_error"]) == (10, None)
    assert "voice.example.com does not resolve from the controller" in c["evidence"][0]
    assert "DNS record of voice.example.com" in c["remedy"]


def test_refused_on_a_loopback_url_is_cause_10(facts):
    base = "https://127.0.0.1:40000"
    refused = {"error_class": "refused", "error": "connection refused"}
    facts["external"] = external(base=base, addresses=["127.0.0.1"],
                                 target={"addresses": ["127.0.0.1", "::1", "10.0.2.15"], "local": True,
                                         "how": "ansible_connection=local: the target is this controller"},
                                 https=result(base + "/healthz", **refused),
                                 wss=result("wss://127.0.0.1:40000/ws/twilio-media", **refused))
    report = diagnose(facts)
    assert_degraded_by_external(report)
    c = external_cause(report)
    assert (c["runbook_cause"], c["twilio_error"]) == (10, 31902)
    assert c["evidence"][0].startswith("runbook cause 10: 127.0.0.1 is a loopback address and "
                                       "127.0.0.1:40000 refuses the connection")
    assert "probe 127.0.0.1:$PORT only on the server itself" in c["remedy"]


def test_refused_on_another_hosts_address_is_cause_10(facts):
    refused = {"error_class": "refused", "error": "connection refused"}
    facts["external"] = external(
        target={"addresses": [SERVER_IP], "local": False, "how": "ansible_host=%s" % SERVER_IP},
        https=result(URL + "/healthz", **refused), wss=result("wss://voice.example.com/ws/twilio-media", **refused))
    c = external_cause(diagnose(facts))
    assert c["runbook_cause"] == 10
    assert "resolves to 203.0.113.10, which is not one of the server's addresses" in c["evidence"][0]
    assert any("not one of the server's addresses (ansible_host=198.51.100.7)" in e for e in c["evidence"])


def test_certificate_for_another_name_is_cause_10(facts):
    mismatch = {"error_class": "tls", "tls_kind": "hostname", "verify_code": 62,
                "verify_message": "Hostname mismatch, certificate is not valid for 'voice.example.com'.",
                "error": "certificate verify failed: Hostname mismatch, certificate is not valid for 'voice.example.com'."}
    other = dict(CERT, subject="CN=shop.example.com", names=["DNS:shop.example.com"])
    facts["external"] = external(https=result(URL + "/healthz", **mismatch), certificate=other,
                                 wss=result("wss://voice.example.com/ws/twilio-media", **mismatch))
    c = external_cause(diagnose(facts))
    assert (c["runbook_cause"], c["twilio_error"]) == (10, 31910)
    assert "the certificate at 203.0.113.10:443 is for DNS:shop.example.com, not voice.example.com" in c["evidence"][0]
    assert any(e.startswith("certificate presented: subject CN=shop.example.com") for e in c["evidence"])


# --- TLS trust --------------------------------------------------------------------------------------------
def test_untrusted_certificate_is_31910_with_the_verification_error(facts):
    facts["external"] = external(https=result(URL + "/healthz", **NO_ISSUER), certificate=CERT,
                                 wss=result("wss://voice.example.com/ws/twilio-media", **NO_ISSUER))
    report = diagnose(facts)
    assert_degraded_by_external(report)
    c = external_cause(report)
    assert (c["runbook_cause"], c["twilio_error"]) == (None, 31910)
    assert "unable to get local issuer certificate" in c["evidence"][0]
    assert "Twilio error 31910 (TLS handshake error)" in c["evidence"][0]
    assert ("certificate presented: subject CN=voice.example.com,O=gunicorn_doctor tests, issuer CN=gunicorn_doctor "
            "test CA,O=gunicorn_doctor tests, names DNS:voice.example.com, IP:127.0.0.1") in c["evidence"][3]
    assert "doctor_ca_bundle" in c["remedy"] and "public CA" in c["remedy"]


def test_expired_certificate_says_renew(facts):
    expired = dict(NO_ISSUER)
    expired.update(verify_code=10, verify_message="certificate has expired",
                   error="certificate verify failed: certificate has expired")
    facts["external"] = external(https=result(URL + "/healthz", **expired), certificate=CERT,
                                 wss=result("wss://voice.example.com/ws/twilio-media", **expired))
    c = external_cause(diagnose(facts))
    assert c["remedy"].startswith("Renew the certificate of voice.example.com (valid until 2026-11-26 13:10:14 UTC)")


def test_malformed_public_base_url_from_the_service(facts):
    facts["external"] = dict(external(), url_error="'https://voice.example.com:80x' has an invalid port",
                             source="PUBLIC_BASE_URL of the service (read by the voice probe)")
    report = diagnose(facts)
    assert_degraded_by_external(report)
    c = external_cause(report)
    assert (c["runbook_cause"], c["twilio_error"]) == (10, 31923)


# --- the service is down locally: no second cause ----------------------------------------------------------
def test_down_service_gets_no_external_cause(facts):
    stop_service(facts)
    refused = {"error_class": "http_status", "status": 502, "reason": "Bad Gateway", "error": "HTTP 502 Bad Gateway"}
    facts["external"] = external(https=result(URL + "/healthz", **refused),
                                 wss=result("wss://voice.example.com/ws/twilio-media", **refused))
    report = diagnose(facts)
    assert report["verdict"] == "down"
    assert "external_unreachable" not in ids(report)
    assert report["failed_layer"] == "listen"
    ext = layer(report, "external")
    assert ext["status"] == "skip"
    assert check(report, "external", "https healthz")["detail"].startswith(
        "not judged: /healthz is not a stable 200 on 127.0.0.1:8123 yet")
    assert "-> 502 Bad Gateway" in check(report, "external", "https healthz")["detail"]


def test_public_200_while_the_app_is_down_points_at_another_host(facts):
    stop_service(facts)
    facts["external"] = external()
    report = diagnose(facts)
    assert "external_unreachable" not in ids(report)
    assert layer(report, "external")["status"] == "warn"
    assert "runbook cause 10" in check(report, "external", "public URL leads here")["detail"]
