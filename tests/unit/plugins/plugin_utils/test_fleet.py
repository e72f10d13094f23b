"""plugins/plugin_utils/fleet.py: reports -> summary, drift, Markdown, JUnit XML, HTML (pure, no Ansible run)."""

import copy
import html.parser
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils import fleet
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain.causes import LAYERS

SCHEMA = json.loads((Path(__file__).resolve().parents[4] / "docs" / "report.schema.json").read_text())
HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)> | `rm -rf` \x1b[31m\x00'


def cause(cause_id, layer, severity="fail", evidence=None):
    return {"id": cause_id, "layer": layer, "severity": severity, "evidence": evidence or ["%s seen" % cause_id],
            "remedy": "fix %s" % cause_id, "twilio_error": None}


def report(host, verdict="healthy", causes=(), timings=None):
    """A report as verdict.judge makes it: 9 layers, the causes' layers failing or warning."""
    causes = list(causes)
    layers = []
    for name in LAYERS:
        mine = [c for c in causes if c["layer"] == name]
        status = "fail" if any(c["severity"] == "fail" for c in mine) else "warn" if mine else (
            "skip" if name in ("eventlet", "voice", "external") else "pass")
        layers.append({"name": name, "status": status,
                       "checks": [{"name": "%s check" % name, "status": status, "detail": "%s detail" % name}]})
    failed = next((layer["name"] for layer in layers if layer["status"] == "fail"), None)
    found = {"host": host, "verdict": verdict, "failed_layer": failed, "causes": causes, "layers": layers,
             "timings": timings or {"process": 0.01, "dry_import": 0.2, "total": 0.3}}
    jsonschema.validate(found, SCHEMA)
    return found


@pytest.fixture
def fleet_reports():
    return [
        report("web1"),
        report("web2", "down", [cause("not_listening", "listen")]),
        report("web3", "degraded", [cause("bind_loopback_only", "listen")]),
        report("web4", "down", [cause("healthz_error", "healthz")]),
        report("web5", "down", [cause("wrong_port", "listen"), cause("stray_processes", "process", "warn")]),
        fleet.unreachable_report("web6", "Failed to connect to the host via ssh: ssh: connect to host 10.0.0.6 port 22: "
                                         "Connection refused"),
        fleet.not_probed_report("web7", "doctor_chdir='/srv/app' is not a directory on this host: set it to the "
                                        "directory gunicorn runs the app from"),
        report("web8", "down", [cause("not_listening", "listen")]),
    ]


# --- reports for hosts without a diagnosis -----------------------------------------------------------------
def test_unreachable_report_follows_the_contract():
    found = fleet.unreachable_report("web6", "ssh: connect to host web6 port 22: Connection refused\n")
    jsonschema.validate(found, SCHEMA)
    assert found["verdict"] == "unreachable" and found["failed_layer"] is None and found["causes"] == []
    checks = [c for layer in found["layers"] for c in layer["checks"]]
    assert checks[0]["detail"] == "ssh: connect to host web6 port 22: Connection refused"
    assert all(layer["status"] != "fail" for layer in found["layers"])   # failed_layer null: no layer fails


@pytest.mark.parametrize("message, kind", [
    ("doctor_chdir='/srv/app' is not a directory on this host: set it to ...", "not_deployed"),
    ("doctor_port='abc' is not a port: set it to a whole number from 1 to 65535", "input"),
    ("Validation of arguments failed:\nmissing required arguments: doctor_app", "input"),
    ("Failed to import the required Python library (psutil) on web7's Python /usr/bin/python3.", "psutil_missing"),
    ("MODULE FAILURE: ModuleNotFoundError: No module named 'psutil'", "psutil_missing"),
    ("MODULE FAILURE: ModuleNotFoundError: No module named 'yaml'", "probe"),
])
def test_not_probed_report(message, kind):
    found = fleet.not_probed_report("web7", message)
    jsonschema.validate(found, SCHEMA)
    assert found["verdict"] == "down" and found["failed_layer"] is None
    assert [layer["name"] for layer in found["layers"]] == list(LAYERS)
    assert found["error"]["kind"] == kind
    assert found["layers"][0]["checks"][0]["detail"] == " ".join(message.split())
    assert fleet.verdict_label(found) == "down (%s)" % kind.replace("_", " ")


# --- one line per host, worst first ------------------------------------------------------------------------
def test_top_cause_prefers_a_fail_of_the_failed_layer():
    found = report("x", "down", [cause("stray_processes", "process", "warn"), cause("healthz_error", "healthz"),
                                 cause("wrong_port", "listen")])
    assert found["failed_layer"] == "listen"
    assert fleet.top_cause(found)["id"] == "wrong_port"
    assert fleet.evidence_line(found) == "wrong_port seen"
    assert fleet.top_cause(report("y")) is None and fleet.evidence_line(report("y")) == ""


def test_evidence_line_is_one_bounded_line():
    long = report("x", "down", [cause("boot_exception", "boot", evidence=["Traceback:\n  File 'x'\n" + "y" * 500])])
    line = fleet.evidence_line(long)
    assert "\n" not in line and len(line) <= fleet.EVIDENCE_WIDTH and line.endswith("\u2026")


def test_worst_first(fleet_reports):
    order = [r["host"] for r in fleet.worst_first(fleet_reports)]
    # down (lowest failing rung first, unprobed last among the down), unreachable, degraded, healthy; on a rung,
    # hosts grouped by their top cause, the cause that hits the most hosts first (not_listening: 2, wrong_port: 1)
    assert order == ["web2", "web8", "web5", "web4", "web7", "web6", "web3", "web1"]


# --- summary ---------------------------------------------------------------------------------------------------
def test_summary_counts(fleet_reports):
    summary = fleet.summarize(fleet_reports)
    assert summary["hosts"] == 8
    assert summary["by_verdict"] == {"down": 5, "unreachable": 1, "degraded": 1, "healthy": 1}
    assert list(summary["by_verdict"]) == ["down", "unreachable", "degraded", "healthy"]
    assert summary["by_failed_layer"] == {"listen": 4, "healthz": 1}
    assert list(summary["by_failed_layer"]) == ["listen", "healthz"]          # ladder order
    # ranked by hosts hit, then fail before warn
    assert list(summary["by_cause"].items())[0] == ("not_listening", 2)
    assert summary["by_cause"] == {"not_listening": 2, "bind_loopback_only": 1, "wrong_port": 1,
                                   "healthz_error": 1, "stray_processes": 1}
    assert summary["causes"][0]["hosts"] == ["web2", "web8"]
    assert summary["down"] == ["web2", "web4", "web5", "web7", "web8"]
    assert summary["unreachable"] == ["web6"]
    assert summary["not_diagnosed"] == {"web6": "unreachable", "web7": "not_deployed"}


def test_summary_counts_a_cause_once_per_host():
    twice = report("x", "down", [cause("wrong_port", "listen", evidence=["a"]), cause("wrong_port", "listen", evidence=["b"])])
    assert fleet.summarize([twice])["by_cause"] == {"wrong_port": 1}


def test_build_audit_is_json_and_keeps_every_report(fleet_reports):
    audit = fleet.build_audit(fleet_reports, generated_at="2026-11-25T12:00:00Z", report_dir="/r")
    again = json.loads(json.dumps(audit))
    assert sorted(again["reports"]) == sorted(r["host"] for r in fleet_reports)
    assert [row["host"] for row in again["table"]][:3] == ["web2", "web8", "web5"]
    assert again["drift"] is None
    for found in again["reports"].values():
        jsonschema.validate(found, SCHEMA)


# --- drift -------------------------------------------------------------------------------------------------------
def test_drift_new_fixed_changed_added_removed(fleet_reports):
    previous = fleet.build_audit(fleet_reports, generated_at="2026-11-24T12:00:00Z")
    now = copy.deepcopy(fleet_reports)
    now = [r for r in now if r["host"] != "web8"]                                   # removed
    now[0] = report("web1", "down", [cause("not_listening", "listen")])             # new problem
    now[2] = report("web3")                                                          # fixed
    now[3] = report("web4", "down", [cause("boot_exception", "boot")])              # changed cause
    now[5] = fleet.unreachable_report("web6", "still refused")                       # same: not listed
    now.append(report("web9", "degraded", [cause("fd_limit_low", "system", "warn")]))  # added, new
    now.append(report("web10"))                                                       # added, healthy
    found = fleet.drift(json.loads(json.dumps(previous)), now)
    assert found["previous_generated_at"] == "2026-11-24T12:00:00Z"
    assert [e["host"] for e in found["new"]] == ["web1", "web9"]
    assert [e["host"] for e in found["fixed"]] == ["web3"]
    assert found["fixed"][0]["before"] == {"verdict": "degraded", "failed_layer": "listen", "causes": ["bind_loopback_only"]}
    assert found["fixed"][0]["after"]["verdict"] == "healthy"
    assert [e["host"] for e in found["changed"]] == ["web4"]
    assert found["changed"][0]["causes_added"] == ["boot_exception"]
    assert found["changed"][0]["causes_removed"] == ["healthz_error"]
    assert found["added"] == ["web10", "web9"]
    assert found["removed"] == ["web8"]


def test_drift_verdict_change_alone_is_a_change():
    before = fleet.build_audit([report("web6", "down", [cause("not_listening", "listen")])])
    found = fleet.drift(before, [fleet.unreachable_report("web6", "refused")])
    assert [e["host"] for e in found["changed"]] == ["web6"]
    assert found["new"] == [] and found["fixed"] == []


def test_drift_without_previous_and_from_a_list():
    assert fleet.drift(None, [report("a")]) is None
    previous = {"generated_at": "t", "reports": [report("a", "down", [cause("not_listening", "listen")])]}
    assert [e["host"] for e in fleet.drift(previous, [report("a")])["fixed"]] == ["a"]


# --- Markdown -------------------------------------------------------------------------------------------------
def test_markdown_table_worst_first_and_causes_ranked(fleet_reports):
    previous = fleet.build_audit(fleet_reports, generated_at="2026-11-24T12:00:00Z")
    now = [report("web3") if r["host"] == "web3" else r for r in fleet_reports]
    text = fleet.markdown(fleet.build_audit(now, previous, generated_at="2026-11-25T12:00:00Z"))
    rows = [line for line in text.splitlines() if line.startswith("| web")]
    assert [r.split("|")[1].strip() for r in rows] == ["web2", "web8", "web5", "web4", "web7", "web6", "web1", "web3"]
    assert rows[2] == "| web5 | DOWN | listen | wrong_port | wrong_port seen |"
    assert "| web7 | DOWN (NOT DEPLOYED) | - | not_deployed | doctor_chdir='/srv/app' is not a directory" in text
    cause_rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert cause_rows[0].startswith("| `not_listening` | listen | fail | 2 | web2, web8 |")
    assert "- fixed: web3 - degraded at listen (bind_loopback_only) -> healthy" in text
    assert "Compared with the audit of 2026-11-24T12:00:00Z." in text


def test_markdown_cells_are_inert():
    hostile = report("web<1>", "down", [cause("boot_exception", "boot", evidence=[HOSTILE])])
    text = fleet.markdown(fleet.build_audit([hostile]))
    row = next(line for line in text.splitlines() if line.startswith("| web"))
    assert "<script>" not in text and "<img" not in text
    assert "&lt;script>" in row and "\\|" in row and "\x1b" not in row and "\x00" not in row
    assert row.count(" | ") == 4     # the evidence's own pipe does not add a column


# --- JUnit XML --------------------------------------------------------------------------------------------------
def test_junit_xml_suites_cases_failures(fleet_reports):
    audit = fleet.build_audit(fleet_reports, generated_at="2026-11-25T12:00:00Z")
    root = ET.fromstring(fleet.junit_xml(audit).encode("utf-8"))
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert sorted(suites) == sorted(r["host"] for r in fleet_reports)
    web5 = suites["web5"]
    assert [c.get("name") for c in web5.findall("testcase")] == list(LAYERS)
    assert web5.get("tests") == "9" and web5.get("failures") == "1" and web5.get("errors") == "0"
    assert web5.get("skipped") == "3"
    listen = next(c for c in web5.findall("testcase") if c.get("name") == "listen")
    failure = listen.find("failure")
    assert failure.get("type") == "wrong_port" and failure.get("message") == "wrong_port: wrong_port seen"
    assert "remedy: fix wrong_port" in failure.text
    process = next(c for c in web5.findall("testcase") if c.get("name") == "process")
    assert process.find("failure") is None and "stray_processes" in process.find("system-out").text   # warn: passes
    props = {p.get("name"): p.get("value") for p in web5.find("properties")}
    assert props == {"verdict": "down", "failed_layer": "listen", "top_cause": "wrong_port"}
    boot = next(c for c in web5.findall("testcase") if c.get("name") == "boot")
    assert boot.get("time") == "0.200"
    # an unreachable host is one error, not nine failures
    web6 = suites["web6"]
    assert web6.get("tests") == "1" and web6.get("errors") == "1" and web6.get("failures") == "0"
    assert "Connection refused" in web6.find("testcase/error").get("message")
    web7 = suites["web7"]
    assert web7.get("errors") == "1" and web7.get("skipped") == "8"
    assert all(len(case.findall("failure")) <= 1 for case in root.iter("testcase"))
    healthy = suites["web1"]
    assert healthy.get("failures") == "0" and healthy.findall("testcase/failure") == []
    totals = {k: sum(int(s.get(k)) for s in suites.values()) for k in ("tests", "failures", "errors", "skipped")}
    assert {k: int(root.get(k)) for k in totals} == totals


def test_junit_xml_survives_hostile_text():
    hostile = report("web<&>\"1", "down", [cause("boot_exception", "boot", evidence=[HOSTILE])])
    text = fleet.junit_xml(fleet.build_audit([hostile]))
    root = ET.fromstring(text.encode("utf-8"))          # well-formed despite <, &, quotes, \x00, \x1b
    suite = root.find("testsuite")
    assert suite.get("name") == 'web<&>"1'
    failure = suite.find("testcase/failure")
    assert "<script>alert" in failure.get("message")   # the text survives, escaped on the wire
    assert "<script>" not in text


# --- HTML -----------------------------------------------------------------------------------------------------------
class _Collect(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


def parse(page):
    collected = _Collect()
    collected.feed(page)
    return collected


def test_html_escapes_everything_and_loads_nothing():
    hostile = report('web"><script>alert(1)</script>', "down", [cause("boot_exception", "boot", evidence=[HOSTILE])])
    hostile["causes"][0]["remedy"] = "</td></tr></table><script>steal()</script>"
    hostile["layers"][4]["checks"][0]["detail"] = "<iframe src=//evil>"
    page = fleet.html_page(fleet.build_audit([hostile, report("web1")]))
    parsed = parse(page)
    assert "script" not in parsed.tags and "img" not in parsed.tags and "iframe" not in parsed.tags
    assert "<script>" not in page and "<iframe" not in page
    text = "".join(parsed.text)
    assert '<script>alert("x")</script>' in text          # shown to the reader as text
    assert "</td></tr></table><script>steal()</script>" in text
    # self-contained: no attribute points outside the page; a CSP forbids scripts and remote loads anyway
    for name, value in parsed.attrs:
        assert name not in ("src", "srcset", "action", "formaction")
        if name == "href":
            assert value.startswith("#"), value
    assert "default-src 'none'" in page and "<link" not in page


def test_html_has_the_table_and_each_ladder(fleet_reports):
    previous = fleet.build_audit(fleet_reports)
    now = [report("web3") if r["host"] == "web3" else r for r in fleet_reports]
    page = fleet.html_page(fleet.build_audit(now, previous, generated_at="2026-11-25T12:00:00Z"))
    text = " ".join(" ".join(parse(page).text).split())
    assert "Hosts, worst first" in text
    assert text.index("web5") < text.index("web1")
    for host in ("web1", "web2", "web6", "web7"):
        assert host in text
    assert "UNREACHABLE" in text and "DOWN (NOT DEPLOYED)" in text and "HEALTHY" in text
    assert "fixed: web3" in text
    assert page.count("<article ") == len(fleet_reports)
    assert re.search(r'<tr class="s-fail"><td>listen</td><td class="st">FAIL</td>', page)


def test_console_lines_stay_short_for_a_big_fleet():
    reports = [report("h%03d" % i, "down", [cause("not_listening", "listen")]) for i in range(60)] + [report("ok")]
    lines = fleet.console_lines(fleet.build_audit(reports), ["/r/audit.html"])
    assert lines[0] == "fleet: 61 hosts: 60 down, 0 unreachable, 0 degraded, 1 healthy"
    assert len([line for line in lines if line.startswith("  h")]) == fleet.CONSOLE_HOSTS
    assert "  ... 11 more host(s), the worst are above: see audit.md" in lines
    assert lines[-2:] == ["  since the previous audit: no previous audit.json (this one is the baseline)", "  /r/audit.html"]


def test_junit_one_failure_per_layer_lists_every_cause():
    two = report("x", "down", [cause("wrong_port", "listen"), cause("bind_loopback_only", "listen")])
    root = ET.fromstring(fleet.junit_xml(fleet.build_audit([two])).encode("utf-8"))
    failures = root.findall("testsuite/testcase[@name='listen']/failure")
    assert len(failures) == 1 and failures[0].get("type") == "wrong_port"
    assert "bind_loopback_only" in failures[0].text


# --- failures at scale: what happened to a host without a diagnosis, and the rerun ------------------------------
# Ansible's messages as seen over real SSH (tests/integration/test_audit_failures.py makes each happen).
BANNER_TIMEOUT = ('Data could not be sent to remote host "10.222.7.12". Make sure this host can be reached over ssh: '
                  'Connection timed out during banner exchange\r\nConnection to 10.222.7.12 port 22 timed out')
CUT_QUIET = 'Data could not be sent to remote host "10.222.7.14". Make sure this host can be reached over ssh:'
CUT_INFO = ('Data could not be sent to remote host "10.222.7.11". Make sure this host can be reached over ssh: '
            "Warning: Permanently added '10.222.7.11' (ED25519) to the list of known hosts.\r\n")
REFUSED = ('Data could not be sent to remote host "10.222.7.16". Make sure this host can be reached over ssh: '
           'ssh: connect to host 10.222.7.16 port 22: Connection refused\r\n')


@pytest.mark.parametrize("message, kind", [
    (BANNER_TIMEOUT, "timeout"),
    ("Failed to connect to the host via ssh: Timeout, server 10.0.0.5 not responding.", "timeout"),
    (CUT_QUIET, "connection_lost"),
    (CUT_INFO, "connection_lost"),
    ("Failed to connect to the host via ssh: Connection to 10.0.0.5 closed by remote host.", "connection_lost"),
    ("Failed to connect to the host via ssh: Shared connection to web3 closed.", "connection_lost"),
    (REFUSED, "unreachable"),
    ("Failed to connect to the host via ssh: root@10.0.0.5: Permission denied (publickey).", "unreachable"),
    ("Failed to connect to the host via ssh: ssh: Could not resolve hostname web9: Name or service not known",
     "unreachable"),
    ("kex_exchange_identification: Connection closed by remote host", "unreachable"),
    ("", "unreachable"),
])
def test_connection_error_kind(message, kind):
    assert fleet.connection_error_kind(message) == kind
    found = fleet.unreachable_report("web2", message)
    jsonschema.validate(found, SCHEMA)
    assert found["verdict"] == "unreachable" and found["error"]["kind"] == kind
    assert fleet.verdict_label(found) == ("unreachable" if kind == "unreachable" else "unreachable (%s)" % kind.replace("_", " "))


def test_the_task_timeout_is_a_timeout_whatever_its_message():
    found = fleet.unreachable_report("web5", "no answer from the host within the task timeout (165 s): Timed out after "
                                             "165 second(s).", "timeout")
    assert found["error"]["kind"] == "timeout" and found["verdict"] == "unreachable"
    assert fleet.cause_label(found) == "timeout"


@pytest.mark.parametrize("kind, says", [
    ("timeout", "did not answer in time"),
    ("connection_lost", "dropped while the probe ran"),
    ("psutil_missing", "has no psutil"),
])
def test_error_markdown_says_what_happened_and_what_to_do(kind, says):
    found = (fleet.not_probed_report("h", "No module named 'psutil'") if kind == "psutil_missing"
             else fleet.unreachable_report("h", "x", kind))
    text = fleet.error_markdown(found)
    assert text.startswith("# h: %s\n" % fleet.verdict_label(found).upper())
    assert "No diagnosis: " in text and says in text
    assert ("ansible_python_interpreter" in text) if kind == "psutil_missing" else ("audit.retry" in text)


def test_failed_hosts_of_every_kind_are_counted_and_listed(fleet_reports):
    reports = fleet_reports + [fleet.unreachable_report("web9", BANNER_TIMEOUT),
                               fleet.unreachable_report("web10", CUT_QUIET),
                               fleet.not_probed_report("web11", "Failed to import the required Python library (psutil)")]
    summary = fleet.summarize(reports)
    assert summary["unreachable"] == ["web10", "web6", "web9"]
    assert "web11" in summary["down"]
    assert {h: summary["not_diagnosed"][h] for h in ("web9", "web10", "web11")} == {
        "web9": "timeout", "web10": "connection_lost", "web11": "psutil_missing"}
    assert summary["by_verdict"]["healthy"] == 1


def test_a_rerun_keeps_the_hosts_it_did_not_audit(fleet_reports):
    previous = json.loads(json.dumps(fleet.build_audit(fleet_reports, generated_at="2026-11-24T12:00:00Z")))
    rerun = [report("web2"), fleet.unreachable_report("web6", REFUSED)]     # web2 fixed, web6 still refused
    everyone = [r["host"] for r in fleet_reports] + ["web99"]               # web99: in the inventory, never audited
    carried = fleet.carried_reports(previous, rerun, everyone)
    assert sorted(r["host"] for r in carried) == sorted(set(everyone) - {"web2", "web6", "web99"})
    assert all(r["carried_from"] == "2026-11-24T12:00:00Z" for r in carried)
    audit = fleet.build_audit(rerun + carried, previous, generated_at="2026-11-25T12:00:00Z")
    assert audit["summary"]["hosts"] == 8
    assert [e["host"] for e in audit["drift"]["fixed"]] == ["web2"]
    assert audit["drift"]["removed"] == [] and audit["drift"]["added"] == [] and audit["drift"]["changed"] == []
    labels = dict((row["host"], row["label"]) for row in audit["table"])
    assert labels["web2"] == "healthy" and labels["web1"] == "healthy (earlier audit)"
    assert labels["web6"] == "unreachable"
    lines = fleet.console_lines(audit)
    assert lines[1] == "  6 host(s) not in this run, as the audit of 2026-11-24T12:00:00Z found them"
    # carried again by a second rerun: still dated by the audit that saw the host
    again = fleet.carried_reports(json.loads(json.dumps(audit)), [report("web6")], everyone)
    assert set(r["carried_from"] for r in again) == {"2026-11-24T12:00:00Z", "2026-11-25T12:00:00Z"}
    assert next(r for r in again if r["host"] == "web2")["carried_from"] == "2026-11-25T12:00:00Z"


def test_no_previous_audit_carries_nothing():
    assert fleet.carried_reports(None, [report("a")], ["a", "b"]) == []
    assert fleet.carried_reports({"reports": {}}, [report("a")], None) == []


def test_rerun_command_is_one_line_a_shell_runs_as_is():
    command = fleet.rerun_command(["/srv/inv one.yml", "/srv/hosts"], "/srv/playbooks/audit.yml", "/srv/r/audit.retry")
    assert command == ("ansible-playbook -i '/srv/inv one.yml' -i /srv/hosts /srv/playbooks/audit.yml "
                       "--limit @/srv/r/audit.retry")
    lines = fleet.console_lines(fleet.build_audit([report("a", "down", [cause("not_listening", "listen")])]),
                                rerun=command)
    assert lines[-1] == "  rerun only the 1 failed host(s) (with the same -e options, if any): " + command


# --- 100 hosts: the summary stays one page, the console stays in columns, progress per host ---------------------
def hundred_hosts():
    """A fleet of 100 as audit_bench makes it: most healthy, some broken one way each, one unreachable."""
    broken = [("not_listening", "listen"), ("bind_loopback_only", "listen"), ("healthz_error", "healthz"),
              ("wrong_port", "listen")]
    reports = []
    for i in range(1, 101):
        host = "h%03d" % i
        if i == 8:
            reports.append(fleet.unreachable_report(host, REFUSED))
        elif i % 10 == 0:
            reports.append(fleet.not_probed_report(host, "doctor_chdir='/srv/app' is not a directory on this host"))
        elif i % 7 == 0:
            cause_id, layer = broken[(i // 7) % len(broken)]
            reports.append(report(host, "degraded" if cause_id == "bind_loopback_only" else "down", [cause(cause_id, layer)]))
        else:
            reports.append(report(host))
    return reports


def test_a_hundred_hosts_are_grouped_by_cause_worst_first():
    audit = fleet.build_audit(hundred_hosts())
    shown, healthy = fleet.table_parts(audit)
    assert len(healthy) == 100 - len(shown) > fleet.HEALTHY_ROWS and healthy == sorted(healthy)
    keys = [(e["verdict"], e["failed_layer"], e["top_cause"] or e["error"]) for e in shown]
    assert keys[0][0] == "down" and keys[-1][0] == "degraded"
    # each group of one cause is contiguous: a cause never comes back after another one
    groups = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
    assert len(groups) == len(set(groups))
    summary = audit["summary"]
    assert summary["by_error_kind"] == {"not_deployed": 10, "unreachable": 1}
    assert sum(summary["by_failed_layer"].values()) == sum(1 for k in keys if k[1])
    text = fleet.markdown(audit)
    assert "| %d hosts | HEALTHY | - | - | h001, h002, h003," % len(healthy) in text
    assert "| not_deployed | 10 | h010, h020," in text and "| unreachable | 1 | h008 |" in text
    assert len([line for line in text.splitlines() if re.match(r"\| h\d{3} \|", line)]) == len(shown)
    page = fleet.html_page(audit)
    assert page.count("<article ") == 100 and page.count("<details>") == len(healthy)
    assert re.search(r'<td><code>not_deployed</code></td><td>-</td><td>no diagnosis</td><td class="n">10</td>', page)
    assert re.search(r'<tr><td>listen</td><td class="n">%d</td></tr>' % summary["by_failed_layer"]["listen"], page)
    lines = fleet.console_lines(audit)
    assert len(lines) < len(shown) + 6 and lines[len(shown) + 1].startswith("  %d healthy: h001, h002" % len(healthy))


def test_console_columns_stay_in_line_with_the_longest_labels():
    """UNREACHABLE (CONNECTION LOST) and (earlier audit) are longer than the label column once was: the columns
    after them still start at one offset on every line."""
    lost = fleet.unreachable_report("web10", CUT_QUIET)
    carried = dict(fleet.not_probed_report("a-much-longer-host-name.example.com", "No module named 'psutil'"),
                   carried_from="2026-11-24T12:00:00Z")
    reports = [lost, carried, report("web2", "down", [cause("not_listening", "listen")]), report("web1")]
    audit = fleet.build_audit(reports)
    labels = dict((e["host"], e["label"].upper()) for e in audit["table"])
    assert labels["web10"] == "UNREACHABLE (CONNECTION LOST)"
    assert labels[carried["host"]] == "DOWN (PSUTIL MISSING) (EARLIER AUDIT)"
    rows = [line for line in fleet.console_lines(audit) if line.startswith("  ") and line.split()[0] in labels]
    assert len(rows) == 4
    starts = set()
    for line in rows:
        host = line.split()[0]
        after_label = line.index(labels[host], len(host) + 2) + len(labels[host])
        assert line[after_label:after_label + 2] == "  "           # never glued to the next column
        starts.add(len(line) - len(line[after_label:].lstrip(" ")))
    assert len(starts) == 1, rows


def test_progress_line_says_the_verdict_of_each_finished_host():
    down = report("web2", "down", [cause("not_listening", "listen")])
    assert fleet.progress_line(3, 12.04, "web2", report=down) == "[   3 done   12.0 s] web2             DOWN          listen not_listening"
    assert fleet.progress_line(1, 0.5, "web1", report=report("web1")).endswith("web1             HEALTHY")
    line = fleet.progress_line(4, 2.9, "web6", unreachable="Task failed: " + REFUSED)
    assert "web6             UNREACHABLE   Data could not be sent" in line and "\n" not in line and "\r" not in line
    line = fleet.progress_line(5, 3.0, "web7", failed="Task failed: Module failed: doctor_chdir='/x' is not a directory")
    assert line.endswith("web7             NOT DIAGNOSED doctor_chdir='/x' is not a directory")


def test_the_audit_fact_says_the_verdict_the_layer_the_causes_and_why_no_diagnosis():
    judged = report("web2", "down", [cause("not_listening", "listen"), cause("slow_boot", "boot", "warn")])
    judged["failed_layer"] = "listen"
    assert fleet.audit_fact(judged) == {"verdict": "down", "failed_layer": "listen",
                                        "causes": ["not_listening", "slow_boot"], "error": None}
    gone = fleet.unreachable_report("web6", fleet.strip_task_prefix(
        "Task failed: Failed to connect to the host via ssh: ssh: connect to host 10.0.0.6 port 22: Connection refused"))
    assert fleet.audit_fact(gone) == {"verdict": "unreachable", "failed_layer": None, "causes": [], "error":
                                      "Failed to connect to the host via ssh: ssh: connect to host 10.0.0.6 port 22: "
                                      "Connection refused"}
    assert gone["error"]["kind"] == "unreachable"
    assert fleet.strip_task_prefix("no prefix: Task failed: kept") == "no prefix: Task failed: kept"


@pytest.mark.parametrize("result", [
    None, {"skipped": True}, {"facts_json": '{"port": {}}'}, {"report_json": "{not json"},
    {"report": {"result": "stabilized", "actions": []}, "paths": []},          # the stabilize record
])
def test_registered_report_is_none_for_anything_but_a_diagnosis(result):
    assert fleet.registered_report(result) is None


def test_registered_report_prefers_the_text_of_host_json():
    report = {"host": "web1", "verdict": "healthy", "failed_layer": None, "causes": [], "layers": []}
    assert fleet.registered_report({"report_json": json.dumps(report), "report": {"stale": True}}) == report
    assert fleet.registered_report({"report": report}) == report
