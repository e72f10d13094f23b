"""The collection as users get it: a fresh venv with only requirements.txt from PyPI, the tarball
`ansible-galaxy collection build` makes, installed with `ansible-galaxy collection install`, and the three
playbooks run by their FQCN from a directory outside the checkout - diagnose on a healthy service,
stabilize on a broken one (standalone runner), audit over a two-host local inventory.

One venv and one installed collection serve every test of the module. The controller and the targets'
modules run on the fresh venv's Python (ansible-core, psutil, requests...); the demo app runs on the
project's Python (doctor_python: flask, gunicorn), as an app's own venv would on a real host. Every
process a test starts is stopped by its PID; everything listens on ports the kernel hands out.
"""

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import psutil
import pytest
import yaml

from doctor_run import PYTHON, ROOT, make_app, schema
from test_diagnose_server_layers import healthy_service
from test_stabilize import Host, serves, stable_200

APP = "AgentLocator.main:app"
PROJECT_BIN = Path(PYTHON).parent
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
FQCN = "%s.%s" % (GALAXY["namespace"], GALAXY["name"])


class Installed:
    """The fresh venv and the collection installed from the tarball into a collections path of its own."""

    def __init__(self, base):
        self.base = base
        self.venv = base / "venv"
        self.bin = self.venv / "bin"
        self.python = str(self.bin / "python")
        self.path = base / "collections"
        self.collection = self.path / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"]
        self.env = user_env(self.bin, self.path)

    def run(self, program, *args, cwd, timeout=300):
        """A program of the fresh venv (ansible-galaxy, ansible-playbook...) as a user runs it."""
        return subprocess.run([str(self.bin / program)] + [str(a) for a in args], cwd=str(cwd), env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              check=False)


def user_env(venv_bin, collections_path):
    """A shell of a user outside the checkout: no ANSIBLE_* settings but the collections path (so no
    ansible.cfg, no .collections link, no ~/.ansible/collections), the fresh venv first on PATH and the
    project's venv not on it at all."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ANSIBLE_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    path = [p for p in env.get("PATH", os.defpath).split(os.pathsep)
            if p and os.path.realpath(p) != os.path.realpath(str(PROJECT_BIN))]
    env["PATH"] = os.pathsep.join([str(venv_bin)] + path)
    env.update({"ANSIBLE_COLLECTIONS_PATH": str(collections_path), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"})
    return env


def outside_checkout(path):
    path = Path(path).resolve()
    assert path != ROOT and ROOT not in path.parents, "%s is inside the checkout %s" % (path, ROOT)
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """python3 -m venv; pip install -r requirements.txt (pip's cache kept); galaxy build from the checkout;
    galaxy install of the tarball. -> Installed."""
    it = Installed(outside_checkout(tmp_path_factory.mktemp("collection-install")))
    python3 = shutil.which("python3", path=it.env["PATH"])
    assert python3, "no python3 on PATH"
    made = subprocess.run([python3, "-m", "venv", str(it.venv)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300, check=False)
    assert made.returncode == 0, made.stdout
    pip = subprocess.run([it.python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          "-r", str(ROOT / "requirements.txt")], env=it.env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=900, check=False)
    assert pip.returncode == 0, "pip install -r requirements.txt failed:\n" + pip.stdout[-4000:]
    # The fresh venv holds the collection's runtime requirements and nothing of the project's venv.
    probe = subprocess.run([it.python, "-c", "import sys, psutil, requests, jinja2, websocket, ansible\n"
                            "import importlib.util as u\nprint(sys.prefix, [m for m in ('flask', 'gunicorn', 'pytest') "
                            "if u.find_spec(m)])"], env=it.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=60, check=False)
    assert probe.returncode == 0, probe.stdout
    assert probe.stdout.split() == [str(it.venv), "[]"], probe.stdout

    dist = it.base / "dist"
    built = it.run("ansible-galaxy", "collection", "build", "--output-path", dist, cwd=ROOT)
    assert built.returncode == 0, built.stdout
    tarball = dist / ("%s-%s-%s.tar.gz" % (GALAXY["namespace"], GALAXY["name"], GALAXY["version"]))
    assert tarball.is_file(), built.stdout
    done = it.run("ansible-galaxy", "collection", "install", "--force", "-p", it.path, tarball, cwd=it.base)
    assert done.returncode == 0, done.stdout
    return it


def inventory(tmp_path, installed, hosts):
    """A local-connection inventory: the targets' modules on the fresh venv, the app on the project's Python."""
    common = {
        "ansible_connection": "local",
        "ansible_python_interpreter": installed.python,
        "doctor_python": PYTHON,
        "doctor_app": APP,
        "doctor_report_dir": str(tmp_path / "reports"),
        "doctor_stability_window": 3,
    }
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"all": {"vars": common, "hosts": hosts}}))
    return path


def playbook(installed, tmp_path, name, inventory_path, *extra):
    """ansible-playbook FQCN.NAME -vvv from tmp_path (outside the checkout) -> CompletedProcess, after
    checking that every module of the collection it ran came from the installed copy."""
    done = installed.run("ansible-playbook", "-i", inventory_path, "%s.%s" % (FQCN, name), "-vvv", *extra,
                         cwd=outside_checkout(tmp_path))
    used = re.findall(r"^Using module file (\S+)$", done.stdout, re.M)
    ours = [p for p in used if "/ansible_collections/%s/%s/" % (GALAXY["namespace"], GALAXY["name"]) in p]
    assert ours, "no module of %s ran:\n%s" % (FQCN, done.stdout[-4000:])
    elsewhere = [p for p in ours if installed.collection not in Path(p).resolve().parents]
    assert not elsewhere, "modules from another copy of the collection: %s" % sorted(set(elsewhere))
    return done


def tail(done):
    return done.stdout[-6000:]


# --- the installed copy ----------------------------------------------------------------------------------
def test_tarball_installs_a_copy_only_found_on_the_collections_path(installed, tmp_path):
    manifest = json.loads((installed.collection / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["version"] == GALAXY["version"]
    assert not installed.collection.is_symlink() and outside_checkout(installed.collection)
    for name in ("diagnose", "stabilize", "audit"):
        assert (installed.collection / "playbooks" / ("%s.yml" % name)).is_file()
    assert (installed.collection / "docs" / "causes.md").is_file() and (installed.collection / "requirements.txt").is_file()
    for left_out in ("demo-run", ".venv", ".collections", ".pytest_cache", "tests/output", "ansible.cfg", "scripts",
                     "benchmarks"):
        assert not (installed.collection / left_out).exists(), left_out
    # What ansible sees in the user's shell: this collection once, from the install path - not through the
    # checkout's .collections link, not from ~/.ansible/collections (where ansible-lint installs a copy).
    listed = installed.run("ansible-galaxy", "collection", "list", "--format", "json", cwd=outside_checkout(tmp_path))
    assert listed.returncode == 0, listed.stdout
    found = json.loads(listed.stdout[listed.stdout.index("{"):])
    where = sorted(path for path, collections in found.items() if FQCN in collections)
    assert where == [str(installed.path / "ansible_collections")], found
    assert found[where[0]][FQCN]["version"] == GALAXY["version"]


def test_ansible_doc_renders_every_module_and_role_of_the_installed_copy(installed, tmp_path):
    modules = sorted(p.stem for p in (installed.collection / "plugins" / "modules").glob("*.py"))
    roles = sorted(p.parent.parent.name for p in (installed.collection / "roles").glob("*/meta/argument_specs.yml"))
    assert len(modules) >= 10 and "probe" in modules and {"diagnose", "stabilize"} <= set(roles)
    assert roles == sorted(p.name for p in (installed.collection / "roles").iterdir())  # every role has its specs
    done = installed.run("ansible-doc", "--json", *["%s.%s" % (FQCN, m) for m in modules], cwd=outside_checkout(tmp_path))
    assert done.returncode == 0, tail(done)
    docs = json.loads(done.stdout[done.stdout.index("{"):])
    for module in modules:
        doc = docs["%s.%s" % (FQCN, module)]
        assert doc["doc"]["short_description"] and doc["examples"] and doc["doc"]["module"] == module, module
    done = installed.run("ansible-doc", "-t", "role", "--json", *["%s.%s" % (FQCN, r) for r in roles],
                         cwd=outside_checkout(tmp_path))
    assert done.returncode == 0, tail(done)
    docs = json.loads(done.stdout[done.stdout.index("{"):])
    for role in roles:
        main = docs["%s.%s" % (FQCN, role)]["entry_points"]["main"]
        assert main["short_description"] and main["options"], role


# --- diagnose ------------------------------------------------------------------------------------------
def test_diagnose_by_fqcn_reports_a_healthy_service(installed, services, tmp_path, port):
    service = healthy_service(services, tmp_path, port, app_dir=make_app(tmp_path))
    inv = inventory(tmp_path, installed, {"web1": {"doctor_chdir": str(service.app_dir),
                                                   "doctor_log_file": str(tmp_path / "gunicorn.log")}})
    done = playbook(installed, tmp_path, "diagnose", inv)
    assert done.returncode == 0, tail(done)
    report = json.loads((tmp_path / "reports" / "web1.json").read_text())
    jsonschema.validate(report, schema())
    assert report["verdict"] == "healthy", report["causes"]
    assert (tmp_path / "reports" / "web1.md").is_file()


# --- stabilize -----------------------------------------------------------------------------------------
def test_stabilize_by_fqcn_fixes_a_wrong_port_service(installed, tmp_path):
    host = Host(tmp_path)
    try:
        wrong = host.wrong_port_master()   # PORT says host.port; the command binds another port
        inv = inventory(tmp_path, installed, {"web1": host.vars(doctor_service_manager="standalone")})
        done = playbook(installed, tmp_path, "stabilize", inv)
        assert done.returncode == 0, tail(done)
        counts = re.search(r"^web1\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", done.stdout, re.M)
        assert counts and int(counts.group(1)) > 0 and counts.group(2, 3) == ("0", "0"), tail(done)
        stable_200(host.port)
        master = host.service_pid()     # the standalone runner's pidfile in doctor_service_dir
        assert master and serves(master, host.port)
        assert "0.0.0.0:%d" % host.port in psutil.Process(master).cmdline()
        host.assert_strays_gone()
        assert wrong in host.strays
        report = json.loads((tmp_path / "reports" / "web1.stabilize.json").read_text())
        assert report["result"] == "stabilized", report["summary"]
        assert report["before"]["verdict"] == "down" and report["after"]["verdict"] in ("healthy", "degraded")
        assert report["port"] == host.port and report["service"]["manager"] == "standalone"
    finally:
        host.cleanup()


# --- audit ---------------------------------------------------------------------------------------------
def test_audit_by_fqcn_over_two_local_hosts(installed, services, tmp_path, port):
    service = healthy_service(services, tmp_path, port, app_dir=make_app(tmp_path))
    reports = tmp_path / "reports"
    inv = inventory(tmp_path, installed, {
        "web1": {"doctor_chdir": str(service.app_dir), "doctor_log_file": str(tmp_path / "gunicorn.log")},
        "web2": {"doctor_chdir": str(tmp_path / "not-deployed"), "doctor_log_file": str(tmp_path / "web2.log")},
    })

    done = playbook(installed, tmp_path, "audit", inv)

    # A host is down: the play fails (documented), after every file is written.
    assert done.returncode != 0, tail(done)
    assert "1 host(s) down or unreachable: web2" in done.stdout, tail(done)
    for name in ("audit.json", "audit.md", "audit.xml", "audit.html"):
        assert (reports / name).stat().st_size > 0, name
    audit = json.loads((reports / "audit.json").read_text())
    summary = audit["summary"]
    assert summary["hosts"] == 2
    assert summary["by_verdict"] == {"down": 1, "unreachable": 0, "degraded": 0, "healthy": 1}, summary
    assert summary["down"] == ["web2"] and summary["not_diagnosed"] == {"web2": "not_deployed"}, summary
    for host, verdict in (("web1", "healthy"), ("web2", "down")):
        report = json.loads((reports / ("%s.json" % host)).read_text())
        jsonschema.validate(report, schema())
        assert report["verdict"] == verdict and audit["reports"][host] == report
    assert "web2" in (reports / "audit.md").read_text()
    suites = {s.get("name"): s for s in ET.parse(str(reports / "audit.xml")).getroot().findall("testsuite")}
    assert sorted(suites) == ["web1", "web2"] and suites["web1"].get("failures") == "0"

    # doctor_audit_fail_on_down=false: the same fleet, exit status 0.
    again = playbook(installed, tmp_path, "audit", inv, "-e", "doctor_audit_fail_on_down=false")
    assert again.returncode == 0, tail(again)
    assert json.loads((reports / "audit.json").read_text())["summary"]["by_verdict"]["down"] == 1
