"""The collection as users get it: built with ansible-galaxy, installed, run by its FQCN playbook."""

import json
import subprocess
from pathlib import Path

import jsonschema

from doctor_run import PYTHON, ROOT, ansible_env, make_app, schema
from test_diagnose_server_layers import healthy_service


def galaxy(*args, cwd):
    done = subprocess.run([str(Path(PYTHON).parent / "ansible-galaxy")] + list(args), cwd=cwd, env=ansible_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout
    return done.stdout


def test_built_tarball_installs_and_diagnoses_by_fqcn(services, tmp_path, port):
    galaxy("collection", "build", "--output-path", str(tmp_path / "dist"), cwd=ROOT)
    tarball = next((tmp_path / "dist").glob("sre-gunicorn_doctor-*.tar.gz"))
    installed = tmp_path / "collections"
    galaxy("collection", "install", "--force", "-p", str(installed), str(tarball), cwd=tmp_path)
    assert (installed / "ansible_collections" / "sre" / "gunicorn_doctor" / "playbooks" / "diagnose.yml").is_file()
    assert not (installed / "ansible_collections" / "sre" / "gunicorn_doctor" / "demo-run").exists()

    service = healthy_service(services, tmp_path, port, app_dir=make_app(tmp_path))
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"web1": {
        "ansible_connection": "local", "ansible_python_interpreter": PYTHON, "doctor_python": PYTHON,
        "doctor_app": "AgentLocator.main:app", "doctor_chdir": str(service.app_dir),
        "doctor_report_dir": str(tmp_path / "reports"), "doctor_stability_window": 3}}}}))
    env = ansible_env()
    del env["ANSIBLE_CONFIG"]  # as a user outside the checkout: only the installed copy
    env["ANSIBLE_COLLECTIONS_PATH"] = str(installed)
    done = subprocess.run([str(Path(PYTHON).parent / "ansible-playbook"), "-i", str(inventory),
                           "sre.gunicorn_doctor.diagnose"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-4000:]
    report = json.loads((tmp_path / "reports" / "web1.json").read_text())
    jsonschema.validate(report, schema())
    assert report["verdict"] == "healthy", report["causes"]
