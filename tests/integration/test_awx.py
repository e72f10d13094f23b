"""What AWX / Automation Platform runs: jobs through ansible-runner, in an execution environment.

ansible-runner: diagnose.yml and audit.yml are run by `ansible-runner run` (the interface AWX's jobs go
through) on a private data dir laid out as AWX lays it out: env/extravars (what a job template's survey
sets), env/envvars, inventory/hosts, project/ (one-line playbooks importing the collection's by FQCN) and
the collection installed from its built tarball into requirements_collections/ (where AWX installs a
project's collections/requirements.yml). The hosts are local-connection aliases of real gunicorn services
on loopback. Each test reads what a user reads after the job: the reports in doctor_report_dir, and the
runner's artifacts (status, rc, job_events/*.json, the fact cache AWX's fact storage keeps).

Execution environment: `ansible-builder create` on execution-environment.yml makes the build context
(no container runtime needed) with the collection, its Python and its system dependencies in it.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from doctor_run import PYTHON, ROOT, make_app, schema
from gunicorn_service import free_port
from test_diagnose_server_layers import healthy_service

APP = "AgentLocator.main:app"
BIN = Path(PYTHON).parent
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
FQCN = "%s.%s" % (GALAXY["namespace"], GALAXY["name"])


# --- ansible-runner ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """The collection as AWX gets it: `ansible-galaxy collection build`, then installed from the tarball."""
    base = tmp_path_factory.mktemp("awx-collection")
    env = runner_env()
    built = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(base / "dist"),
                            str(ROOT)], cwd=str(base), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=300, check=False)
    assert built.returncode == 0, built.stdout
    tarball = base / "dist" / ("%s-%s-%s.tar.gz" % (GALAXY["namespace"], GALAXY["name"], GALAXY["version"]))
    # --force and run from outside the checkout: the checkout's ansible.cfg finds a copy of the collection
    done = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--force", "-p",
                           str(base / "collections"), str(tarball)], cwd=str(base), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout
    assert (base / "collections" / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"] / "MANIFEST.json").is_file()
    return base / "collections"


def runner_env():
    """The job's environment: no ANSIBLE_* settings of the test run, no ansible.cfg of the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", os.defpath)])
    return env


def private_data_dir(base, collection, hosts, extravars):
    """env/, inventory/, project/ and requirements_collections/ as AWX writes them for a job."""
    pdd = base / "pdd"
    for sub in ("env", "inventory", "project"):
        (pdd / sub).mkdir(parents=True, exist_ok=True)
    (pdd / "env" / "extravars").write_text(yaml.safe_dump(extravars))
    (pdd / "env" / "envvars").write_text(yaml.safe_dump({
        # AWX puts the project's installed requirements first on the collections path.
        "ANSIBLE_COLLECTIONS_PATH": str(pdd / "requirements_collections"),
        "ANSIBLE_PIPELINING": "True",
    }))
    (pdd / "inventory" / "hosts").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    for name in ("diagnose", "audit"):
        (pdd / "project" / ("%s.yml" % name)).write_text(
            "- name: The collection's %s playbook\n  ansible.builtin.import_playbook: %s.%s\n" % (name, FQCN, name))
    if not (pdd / "requirements_collections").exists():
        shutil.copytree(str(collection), str(pdd / "requirements_collections"), symlinks=True)
    return pdd


def local_host(app_dir, log, port):
    return {"ansible_connection": "local", "ansible_python_interpreter": PYTHON, "doctor_chdir": str(app_dir),
            "doctor_log_file": str(log), "doctor_port": port}


def survey(reports, **extra):
    """Extra vars as a job template's survey sets them: the doctor_ variables."""
    return dict({"doctor_app": APP, "doctor_python": PYTHON, "doctor_report_dir": str(reports),
                 "doctor_stability_window": 3}, **extra)


class Job:
    """One `ansible-runner run` and its artifacts."""

    def __init__(self, pdd, ident, playbook, *args):
        self.dir = pdd / "artifacts" / ident
        self.done = subprocess.run([str(BIN / "ansible-runner"), "run", str(pdd), "-p", playbook, "--ident", ident]
                                   + list(args), env=runner_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, timeout=300, check=False)
        self.stdout = (self.dir / "stdout").read_text() if (self.dir / "stdout").exists() else self.done.stdout
        assert (self.dir / "status").is_file(), self.done.stdout[-6000:]
        self.status = (self.dir / "status").read_text().strip()
        self.rc = int((self.dir / "rc").read_text())
        events = [json.loads(p.read_text()) for p in (self.dir / "job_events").glob("*.json")]
        self.events = sorted(events, key=lambda e: e["counter"])

    def results(self, event, task_part):
        """host -> the `res` of each `event` (runner_on_ok...) of the task whose name holds `task_part`."""
        return {e["event_data"]["host"]: e["event_data"]["res"] for e in self.events
                if e["event"] == event and task_part in e["event_data"].get("task", "")}

    def stats(self):
        found = [e["event_data"] for e in self.events if e["event"] == "playbook_on_stats"]
        assert len(found) == 1, [e["event"] for e in self.events]
        return found[0]

    def tail(self):
        return self.stdout[-6000:]


def test_diagnose_through_ansible_runner(collection, services, tmp_path, port):
    service = healthy_service(services, tmp_path, port, app_dir=make_app(tmp_path))
    reports = tmp_path / "reports"
    pdd = private_data_dir(tmp_path, collection, {"web1": local_host(service.app_dir, tmp_path / "gunicorn.log", port)},
                           survey(reports))
    job = Job(pdd, "diagnose", "diagnose.yml")
    assert (job.status, job.rc) == ("successful", 0), job.tail()
    # the per-host result as AWX's job output shows it: the report task's result and the ladder
    judged = job.results("runner_on_ok", "Judge the layers")
    assert list(judged) == ["web1"] and judged["web1"]["report"]["verdict"] == "healthy", job.tail()
    ladder = [e["stdout"] for e in job.events if e["event"] == "runner_on_ok" and "Show the ladder" in e["event_data"]["task"]]
    assert len(ladder) == 1 and "web1: HEALTHY" in ladder[0]
    # the collection ran from where the job installed it, not from the checkout
    probe = next(e["event_data"] for e in job.events if e["event"] == "runner_on_ok" and "Probe every layer" in e["event_data"]["task"])
    assert probe["resolved_action"] == "%s.probe" % FQCN
    assert probe["task_path"].startswith(str(pdd / "requirements_collections") + "/"), probe["task_path"]
    stats = job.stats()
    assert stats["ok"]["web1"] >= 3 and stats["failures"] == {} and stats["dark"] == {}
    report = json.loads((reports / "web1.json").read_text())
    jsonschema.validate(report, schema())
    assert report["verdict"] == "healthy" and report == judged["web1"]["report"]
    assert judged["web1"]["report_json"] == (reports / "web1.json").read_text()   # the file's text, byte for byte


def test_audit_through_ansible_runner_and_the_rerun_of_its_failed_hosts(collection, services, tmp_path, port):
    web1 = healthy_service(services, tmp_path / "web1", port, app_dir=make_app(tmp_path / "web1"))
    web2_port = free_port()
    web2_app = make_app(tmp_path / "web2")           # deployed, ran once, not running now: down (not_listening)
    (tmp_path / "web2" / "gunicorn.log").write_text("")
    reports = tmp_path / "mounted" / "doctor-reports"   # doctor_report_dir on a path that outlives the job
    hosts = {"web1": local_host(web1.app_dir, tmp_path / "web1" / "gunicorn.log", port),
             "web2": local_host(web2_app, tmp_path / "web2" / "gunicorn.log", web2_port)}
    pdd = private_data_dir(tmp_path, collection, hosts, survey(reports))

    job = Job(pdd, "audit", "audit.yml")
    # a host is down: the job fails (rc 2), after the fleet files are written
    assert (job.status, job.rc) == ("failed", 2), job.tail()
    # the per-host result: the report task's, and the verdict every host keeps as a fact (unreachable ones too)
    judged = job.results("runner_on_ok", "and write its report")
    # the report as the text of HOST.json only (report_json): one string per host for Ansible to hand over
    reported = {h: json.loads(r["report_json"]) for h, r in judged.items()}
    assert {h: r["verdict"] for h, r in reported.items()} == {"web1": "healthy", "web2": "down"}
    assert reported["web2"]["failed_layer"] == "listen" and "report" not in judged["web2"]
    assert judged["web2"]["report_json"] == (reports / "web2.json").read_text()
    # (the report task returns it: no task per host more)
    assert {h: r["ansible_facts"]["doctor_audit"]["verdict"] for h, r in judged.items()} == {"web1": "healthy", "web2": "down"}
    failed = job.results("runner_on_failed", "Fail the audit")
    assert len(failed) == 1 and "1 host(s) down or unreachable: web2" in list(failed.values())[0]["msg"]
    stats = job.stats()
    # set_stats: the fleet summary in the job's artifacts (AWX shows it as the job's artifacts)
    summary = stats["artifact_data"]["doctor_audit"]["summary"]
    assert summary["by_verdict"] == {"down": 1, "unreachable": 0, "degraded": 0, "healthy": 1}
    assert summary["down"] == ["web2"] and summary["by_cause"] == {"not_listening": 1}
    assert stats["dark"] == {}
    # the cacheable fact doctor_audit in the job's fact cache (what AWX's fact storage keeps), read back by
    # a later run that touches no host
    env = dict(runner_env(), ANSIBLE_CACHE_PLUGIN="jsonfile", ANSIBLE_CACHE_PLUGIN_CONNECTION=str(job.dir / "fact_cache"))
    cached = subprocess.run([str(BIN / "ansible"), "-i", str(pdd / "inventory"), "web2", "-m", "ansible.builtin.debug",
                             "-a", '{"msg": "{{ doctor_audit.verdict }} {{ doctor_audit.causes | join(\',\') }}"}'],
                            cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=120, check=False)
    assert '"msg": "down not_listening"' in cached.stdout, cached.stdout
    audit = json.loads((reports / "audit.json").read_text())
    assert sorted(audit["reports"]) == ["web1", "web2"]
    assert (reports / "audit.retry").read_text() == "web2\n"
    assert "rerun only the 1 failed host(s)" in job.stdout and "--limit @%s" % (reports / "audit.retry") in job.stdout

    # web2 is started; a second job audits only the failed host, from the retry list
    services(web2_app, tmp_path / "web2" / "gunicorn.log", bind="0.0.0.0:%d" % web2_port, env={"PORT": str(web2_port)})
    rerun = Job(pdd, "rerun", "audit.yml", "--limit", "@%s" % (reports / "audit.retry"))
    assert (rerun.status, rerun.rc) == ("successful", 0), rerun.tail()
    assert list(rerun.results("runner_on_ok", "and write its report")) == ["web2"]      # only web2 was probed
    audit = json.loads((reports / "audit.json").read_text())
    assert audit["reports"]["web2"]["verdict"] == "healthy"
    assert audit["reports"]["web1"]["carried_from"] == audit["drift"]["previous_generated_at"]
    assert [e["host"] for e in audit["drift"]["fixed"]] == ["web2"] and audit["drift"]["removed"] == []
    assert rerun.stats()["artifact_data"]["doctor_audit"]["summary"]["by_verdict"]["healthy"] == 2
    assert not (reports / "audit.retry").exists()


# --- execution environment -----------------------------------------------------------------------------------
def requirement_names(path):
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {Requirement(line).name.lower() for line in lines if line}


def bindep_lines(path):
    return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]


def test_execution_environment_build_context(tmp_path):
    """`ansible-builder create` on execution-environment.yml: the context holds the collection (its galaxy
    requirement), its Python and system requirements and a Containerfile that installs all three; the
    context's own introspect step, run on the collection as the image's galaxy stage installs it, finds
    the collection's requirements the image installs."""
    pytest.importorskip("ansible_builder")
    ctx = tmp_path / "ctx"
    done = subprocess.run([PYTHON, "-m", "ansible_builder", "create", "-f", str(ROOT / "execution-environment.yml"),
                           "-c", str(ctx), "--output-filename", "Containerfile"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout
    build = ctx / "_build"
    # the collection itself: a galaxy requirement this version satisfies
    wanted = yaml.safe_load((build / "requirements.yml").read_text())["collections"]
    ours = [c for c in wanted if c["name"] == FQCN]
    assert len(ours) == 1 and GALAXY["version"] in SpecifierSet(ours[0]["version"].replace(" ", "")), wanted
    # its Python and system requirements
    assert {"psutil", "requests", "websocket-client"} <= requirement_names(build / "requirements.txt")
    assert bindep_lines(build / "bindep.txt") == bindep_lines(ROOT / "bindep.txt")
    assert "openssh-clients [platform:rpm]" in bindep_lines(build / "bindep.txt")   # the base image is ubi9 (rpm)
    containerfile = (ctx / "Containerfile").read_text()
    for step in ("ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml",
                 "COPY _build/requirements.txt requirements.txt", "COPY _build/bindep.txt bindep.txt",
                 "introspect --user-pip=requirements.txt --user-bindep=bindep.txt",
                 "/output/scripts/install-from-bindep"):
        assert step in containerfile, step
    refs = next(line for line in containerfile.splitlines() if line.startswith("ARG ANSIBLE_INSTALL_REFS="))
    assert "ansible-core" in refs and "ansible-runner" in refs

    # The builder stage: introspect.py from the context on the collection where the galaxy stage puts it.
    collections = tmp_path / "collections"
    (collections / "ansible_collections" / GALAXY["namespace"]).mkdir(parents=True)
    os.symlink(str(ROOT), str(collections / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"]))
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([PYTHON, str(build / "scripts" / "introspect.py"), "introspect",
                           "--user-pip=%s" % (build / "requirements.txt"), "--user-bindep=%s" % (build / "bindep.txt"),
                           "--write-pip=%s" % (out / "requirements.txt"), "--write-bindep=%s" % (out / "bindep.txt"),
                           str(collections)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout
    pip = (out / "requirements.txt").read_text().splitlines()
    from_collection = [line.split("#")[0].strip() for line in pip if line.endswith("# from collection %s" % FQCN)]
    assert {Requirement(line).name for line in from_collection} == {"psutil", "requests", "jinja2", "websocket-client"}
    assert "openssh-clients [platform:rpm]  # from collection %s" % FQCN in (out / "bindep.txt").read_text()
