"""Run the collection's playbooks for real (local connection) and read what they wrote."""

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parents[2]
DEMO_APP = ROOT / "examples" / "agentlocator"
SCHEMA_PATH = ROOT / "docs" / "report.schema.json"  # the report contract, shipped with the collection
PYTHON = sys.executable  # the venv: ansible's interpreter, the app's and the target's


def schema():
    with open(SCHEMA_PATH) as f:
        return json.load(f)


def ansible_env():
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".collections"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    })
    return env


def make_app(tmp_path, edit=None):
    """A copy of the demo app in tmp_path/app; `edit(main_py_text) -> text` injects a fault."""
    app_dir = tmp_path / "app"
    shutil.copytree(DEMO_APP, app_dir, ignore=shutil.ignore_patterns("__pycache__", "*.md"))
    if edit is not None:
        main = app_dir / "AgentLocator" / "main.py"
        main.write_text(edit(main.read_text()))
    return app_dir


def run_playbook(playbook, tmp_path, host_vars, extra_args=(), check=True, timeout=300, memory_limit=None, prefix=()):
    """ansible-playbook PLAYBOOK against localhost with host_vars; -> CompletedProcess. `timeout` ends a run that
    hangs (subprocess.TimeoutExpired); `memory_limit` (bytes of address space) makes one that eats memory fail;
    `prefix` runs it through a command (nsenter into a container's namespaces)."""
    target = {
        "ansible_connection": "local",
        "ansible_python_interpreter": PYTHON,
        "doctor_python": PYTHON,
        "doctor_app": "AgentLocator.main:app",
        "doctor_report_dir": str(tmp_path / "reports"),
        "doctor_stability_window": 3,
    }
    target.update(host_vars)
    inventory = {"all": {"hosts": {"target": target}}}
    inv = tmp_path / "inventory.json"
    inv.write_text(json.dumps(inventory))
    cmd = list(prefix) + [str(Path(PYTHON).parent / "ansible-playbook"), "-i", str(inv), str(ROOT / "playbooks" / playbook)]
    cmd += list(extra_args)
    limit = None if memory_limit is None else (
        lambda: resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit)))
    done = subprocess.run(cmd, cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout, check=False, preexec_fn=limit)
    if check and done.returncode != 0:
        raise AssertionError("ansible-playbook failed (%d):\n%s" % (done.returncode, done.stdout[-6000:]))
    return done


def diagnose(tmp_path, host_vars, extra_args=(), timeout=300, prefix=()):
    """Run diagnose.yml; -> (report dict validated against the contract's schema, playbook output)."""
    done = run_playbook("diagnose.yml", tmp_path, host_vars, extra_args, timeout=timeout, prefix=prefix)
    report_path = tmp_path / "reports" / "target.json"
    report = json.loads(report_path.read_text())
    jsonschema.validate(report, schema())
    assert (tmp_path / "reports" / "target.md").is_file()
    return report, done.stdout


def cause_ids(report, severity=None):
    return [c["id"] for c in report["causes"] if severity is None or c["severity"] == severity]


def cause(report, cause_id):
    found = [c for c in report["causes"] if c["id"] == cause_id]
    assert found, "no cause %s in %s" % (cause_id, json.dumps(report["causes"], indent=1)[:3000])
    return found[0]


def layer(report, name):
    return next(l for l in report["layers"] if l["name"] == name)
