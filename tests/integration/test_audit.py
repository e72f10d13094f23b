"""audit.yml over real SSH against a fleet of network-namespace hosts (tests/integration/netns_hosts.py).

Six hosts, each with its own sshd and gunicorn service, some broken in different ways, plus an
inventory entry whose app is not deployed; one host's sshd is stopped (unreachable). The audit must
find exactly the ground truth, write every file, exit non-zero (hosts are down) after writing them,
and a second audit after fixing one host must show it under "fixed". The HTML page is opened in
headless Chromium and its text is checked. DOCTOR_KEEP_AUDIT=1 keeps the reports (and the
screenshot, audit.png) in /tmp/doctor-audit-*/ to look at.
"""

import html.parser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import yaml
import pytest

import netns_hosts
from doctor_run import PYTHON, ROOT, ansible_env, make_app, schema

APP = "AgentLocator.main:app"

# host -> (verdict, failed_layer, a fail cause id or the error kind of a host without a diagnosis)
GROUND_TRUTH = {
    "web1": ("healthy", None, None),
    "web2": ("down", "listen", "not_listening"),          # deployed, not running
    "web3": ("degraded", "listen", "bind_loopback_only"),  # -b 127.0.0.1:$PORT: answers on loopback only
    "web4": ("down", "healthz", "healthz_error"),          # /healthz raises: 500
    "web5": ("down", "listen", "wrong_port"),              # PORT=8123, -b 0.0.0.0:5000
    "web6": ("unreachable", None, "unreachable"),          # sshd stopped
    "web7": ("down", None, "not_deployed"),                # web1's machine, doctor_chdir does not exist
}


def failing_healthz(text):
    return text.replace('@app.get("/healthz")\n    def healthz():\n',
                        '@app.get("/healthz")\n    def healthz():\n        raise RuntimeError("database unreachable")\n')


def host_vars(fleet, name, app_dir, port):
    host = fleet[name]
    (host.dir / "service.env").write_text("PORT=%d\n" % port)
    return dict(fleet.connection_vars(name, PYTHON), doctor_app=APP, doctor_chdir=str(app_dir), doctor_python=PYTHON,
                doctor_env_file=str(host.dir / "service.env"), doctor_log_file=str(host.dir / "app.log"))


@pytest.fixture(scope="module")
def fleet():
    work = netns_hosts.fleet_work_dir("doctor-audit-")
    with netns_hosts.Fleet(work / "fleet", ["web1", "web2", "web3", "web4", "web5", "web6"]) as hosts:
        inventory = {}
        for name in ("web1", "web2", "web3", "web4", "web5"):
            app_dir = make_app(hosts[name].dir, failing_healthz if name == "web4" else None)
            port = 8123 if name == "web5" else 8000
            inventory[name] = host_vars(hosts, name, app_dir, port)
            bind = {"web3": "127.0.0.1:8000", "web5": "0.0.0.0:5000"}.get(name, "0.0.0.0:%d" % port)
            if name == "web2":
                (hosts[name].dir / "app.log").write_text("")    # it ran once; nothing runs it now
            else:
                hosts[name].start_gunicorn(app_dir, bind, env={"PORT": str(port)}, log=hosts[name].dir / "app.log")
        inventory["web6"] = host_vars(hosts, "web6", hosts["web6"].dir / "app", 8000)
        hosts["web6"].stop_sshd()
        inventory["web7"] = dict(inventory["web1"], doctor_chdir=str(hosts["web1"].dir / "not-deployed"))
        hosts.work = work
        hosts.inventory = inventory
        yield hosts
    if not os.environ.get("DOCTOR_KEEP_AUDIT"):
        shutil.rmtree(str(work), ignore_errors=True)


def audit(fleet, reports, *extra, env=None):
    inventory = {"all": {"vars": {"doctor_report_dir": str(reports), "doctor_stability_window": 3},
                         "hosts": fleet.inventory}}
    path = fleet.work / "inventory.json"
    path.write_text(json.dumps(inventory))
    cmd = [str(Path(PYTHON).parent / "ansible-playbook"), "-i", str(path), str(ROOT / "playbooks" / "audit.yml"),
           "-f", "10"] + list(extra)
    return subprocess.run(cmd, cwd=ROOT, env=dict(ansible_env(), **(env or {})), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def first(fleet):
    reports = fleet.work / "reports"
    done = audit(fleet, reports)
    # The first audit as it was: a later test fixes web3 and audits again into the same directory.
    shutil.copyfile(str(reports / "audit.json"), str(fleet.work / "first-audit.json"))
    return done, reports


def test_audit_finds_the_ground_truth_over_ssh(first):
    done, reports = first
    audit_json = json.loads((reports / "audit.json").read_text())
    found = {}
    for host, report in audit_json["reports"].items():
        ids = [c["id"] for c in report["causes"] if c["severity"] == "fail"]
        key = (report.get("error") or {}).get("kind")
        expected_cause = GROUND_TRUTH[host][2]
        found[host] = (report["verdict"], report["failed_layer"],
                       expected_cause if expected_cause in ids or expected_cause == key else (ids, key))
    assert found == GROUND_TRUTH, done.stdout[-6000:]
    # every host has its report on disk, valid against the contract's schema (unreachable ones too)
    for host in GROUND_TRUTH:
        report = json.loads((reports / ("%s.json" % host)).read_text())
        jsonschema.validate(report, schema())
        assert report["host"] == host and (reports / ("%s.md" % host)).is_file()
        assert report == audit_json["reports"][host]
    # the probe saw only its own host: one master on each host that runs one
    for host in ("web1", "web3", "web4", "web5"):
        checks = [c["name"] for layer in audit_json["reports"][host]["layers"] for c in layer["checks"]]
        assert sum(1 for c in checks if c.startswith("gunicorn master")) == 1, checks


def test_down_hosts_fail_the_play_after_every_file_is_written(first):
    done, reports = first
    assert done.returncode != 0
    assert "host(s) down or unreachable: web2, web4, web5, web6, web7" in done.stdout
    for name in ("audit.json", "audit.md", "audit.xml", "audit.html"):
        assert (reports / name).stat().st_size > 0
    assert "fleet: 7 hosts: 4 down, 1 unreachable, 1 degraded, 1 healthy" in done.stdout


def test_unreachable_and_undeployed_hosts_are_reported_not_fatal(first):
    done, reports = first
    web6 = json.loads((reports / "web6.json").read_text())
    assert web6["verdict"] == "unreachable" and web6["failed_layer"] is None
    detail = web6["layers"][0]["checks"][0]["detail"]
    assert "Connection refused" in detail and "port 22" in detail
    web7 = json.loads((reports / "web7.json").read_text())
    assert web7["error"]["kind"] == "not_deployed"
    assert web7["layers"][0]["checks"][0]["detail"].startswith("doctor_chdir=")
    # web1 shares web7's machine and was still diagnosed
    assert json.loads((reports / "web1.json").read_text())["verdict"] == "healthy"
    assert "UNREACHABLE" in done.stdout and "rescued=1" in done.stdout   # seen, recorded, not fatal


def test_fleet_summary_markdown_and_junit(first):
    done, reports = first
    summary = json.loads((reports / "audit.json").read_text())["summary"]
    assert summary["by_verdict"] == {"down": 4, "unreachable": 1, "degraded": 1, "healthy": 1}
    assert summary["by_failed_layer"] == {"listen": 3, "healthz": 1}
    assert summary["by_cause"]["wrong_port"] == 1 and summary["by_cause"]["healthz_error"] == 1
    md = (reports / "audit.md").read_text()
    rows = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| web")]
    assert rows[:3] == ["web2", "web5", "web4"] or rows[:3] == ["web5", "web2", "web4"]
    assert rows[-1] == "web1" and rows.index("web6") > rows.index("web7")
    root = ET.parse(str(reports / "audit.xml")).getroot()
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert sorted(suites) == sorted(GROUND_TRUTH)
    assert suites["web1"].get("failures") == "0" and suites["web1"].get("tests") == "9"
    failure = suites["web5"].find("testcase[@name='listen']/failure")
    assert failure.get("type") == "wrong_port"
    assert suites["web6"].get("errors") == "1"


def chromium_text(page, workdir):
    """The page's text as headless Chromium renders it (--dump-dom), plus a screenshot beside it."""
    netns_hosts.ensure_packages(("chromium",), ("chromium",))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--user-data-dir=%s" % (workdir / "chromium-profile")]
    outputs = []
    for mode in (["--dump-dom"], ["--screenshot=%s" % (workdir / "audit.png"), "--window-size=1280,1600"]):
        proc = subprocess.Popen([shutil.which("chromium")] + flags + mode + [page.as_uri()], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)   # its own process group: the browser and its helpers
                proc.wait()
        assert proc.returncode == 0, err[-3000:]
        outputs.append(out)
    return outputs[0]


class _Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells = []

    def handle_data(self, data):
        if data.strip():
            self.cells.append(" ".join(data.split()))


def page_cells(dom):
    """The text pieces of a rendered page, in document order."""
    parser = _Text()
    parser.feed(dom)
    return parser.cells


def test_html_page_in_headless_chromium(first):
    done, reports = first
    dom = chromium_text(reports / "audit.html", reports.parent)
    cells = page_cells(dom)
    assert "Fleet audit" in cells
    table = cells[cells.index("Hosts, worst first"):cells.index("Since the previous audit")]
    rows = {}
    for host in GROUND_TRUTH:
        at = table.index(host)
        rows[host] = table[at + 1]                     # the verdict cell follows the host's cell
    assert rows == {"web1": "HEALTHY", "web2": "DOWN", "web3": "DEGRADED", "web4": "DOWN", "web5": "DOWN",
                    "web6": "UNREACHABLE", "web7": "DOWN (NOT DEPLOYED)"}
    for cause_id in ("wrong_port", "healthz_error", "bind_loopback_only", "not_listening"):
        assert cause_id in table
    assert (reports.parent / "audit.png").stat().st_size > 10000


def test_second_audit_shows_the_fixed_host(fleet, first):
    reports = first[1]
    web3 = fleet["web3"]
    web3.stop_gunicorn()
    web3.start_gunicorn(fleet.inventory["web3"]["doctor_chdir"], "0.0.0.0:8000", env={"PORT": "8000"},
                        log=web3.dir / "app.log")
    cache_env = {"ANSIBLE_CACHE_PLUGIN": "ansible.builtin.jsonfile",
                 "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(fleet.work / "facts")}
    done = audit(fleet, reports, "-e", "doctor_audit_fail_on_down=false", env=cache_env)
    assert done.returncode == 0, done.stdout[-6000:]
    audit_json = json.loads((reports / "audit.json").read_text())
    assert audit_json["reports"]["web3"]["verdict"] == "healthy"
    drift = audit_json["drift"]
    assert [e["host"] for e in drift["fixed"]] == ["web3"]
    assert drift["fixed"][0]["before"] == {"verdict": "degraded", "failed_layer": "listen", "causes": ["bind_loopback_only"]}
    assert drift["new"] == [] and drift["changed"] == [] and drift["added"] == [] and drift["removed"] == []
    assert "fixed: web3" in (reports / "audit.md").read_text()
    assert "since the previous audit: new: none; fixed: web3; changed: none" in done.stdout
    # with a fact cache, each host's last verdict is kept as the fact doctor_audit: a later run reads it
    # from the cache without touching the hosts (what a follow-up AWX job template would do)
    cached = subprocess.run([str(Path(PYTHON).parent / "ansible"), "-i", str(fleet.work / "inventory.json"), "web3,web6",
                             "-m", "ansible.builtin.debug", "-a", "msg={{ doctor_audit.verdict }}", "-o"],
                            cwd=ROOT, env=dict(ansible_env(), **cache_env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
    assert re.search(r'^web3 \| SUCCESS => .*"msg": "healthy"', cached.stdout, re.M), cached.stdout
    assert re.search(r'^web6 \| SUCCESS => .*"msg": "unreachable"', cached.stdout, re.M), cached.stdout


def test_only_the_fleet_write_waits_for_every_host():
    """Play 1 runs each host at its own pace (strategy free); play 2 is the one barrier and runs
    every task once, on the controller."""
    plays = yaml.safe_load((ROOT / "playbooks" / "audit.yml").read_text())
    assert len(plays) == 2
    assert plays[0]["strategy"] in ("free", "ansible.builtin.free") and plays[0]["gather_facts"] is False
    assert all(task.get("run_once") is True and task.get("delegate_to") == "localhost" for task in plays[1]["tasks"])


def test_a_hundred_host_page_reads_worst_first_with_counts_per_cause_in_headless_chromium(first):
    """The fleet page at 100 hosts, from this audit's real reports (each host's repeated under new names until
    there are 100, 88 of them healthy), as a user reads it in a browser: the counts per cause and per first
    failing layer, then the hosts worst first, the healthy ones in one row."""
    if str(ROOT / ".collections") not in sys.path:     # the collection's own name, as in test_diagnose_external
        sys.path.insert(0, str(ROOT / ".collections"))
    from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils import fleet as fleet_view
    reports = first[1]
    real = json.loads((reports.parent / "first-audit.json").read_text())["reports"]
    hundred = []
    for i in range(1, 101):
        source = real["web1" if i > 14 else "web%d" % ((i - 1) % 7 + 1)]
        hundred.append(dict(source, host="h%03d" % i))
    audit = fleet_view.build_audit(hundred)
    page = reports.parent / "audit100" / "audit.html"
    page.parent.mkdir(exist_ok=True)
    page.write_text(fleet_view.html_page(audit))
    cells = page_cells(chromium_text(page, page.parent))
    causes = cells[cells.index("Causes by hosts hit"):cells.index("Hosts, worst first")]
    # each cause with its count, the hosts without a diagnosis by what happened, the layers counted
    assert causes[causes.index("not_listening") + 3] == "2" and causes[causes.index("wrong_port") + 3] == "2"
    assert causes[causes.index("unreachable") + 3] == "2" and causes[causes.index("not_deployed") + 3] == "2"
    layers = causes[causes.index("First failing layer"):]
    assert layers[layers.index("listen") + 1] == "6" and layers[layers.index("healthz") + 1] == "2"
    hosts = cells[cells.index("Hosts, worst first"):cells.index("Since the previous audit")]
    assert hosts[hosts.index("evidence") + 1:][:2] == ["h002", "DOWN"]        # the worst host first
    assert "88 hosts" in hosts and hosts[hosts.index("88 hosts") + 1] == "HEALTHY"
    assert hosts.index("88 hosts") > hosts.index("DEGRADED")                   # the healthy ones last
