"""gunicorn as a container's main process (`CMD ["gunicorn", ...]`): PID 1 of its own PID namespace, diagnosed from
inside it the way a docker/podman connection runs Ansible (issue 13, a shape found by trying). Its workers are no
masters of their own, nothing calls it detached, and stabilize never signals it. Real namespaces (unshare, nsenter),
real gunicorn; the namespace's PID 1 is stopped by its host PID."""

import json
import shutil
import subprocess

import psutil
import pytest

from doctor_run import PYTHON, cause, cause_ids, diagnose, make_app, run_playbook
from gunicorn_service import free_port
from test_stabilize import wait_for, healthz, alive, stop_tree


@pytest.fixture
def container(tmp_path):
    """-> start(argv, port): gunicorn as PID 1 of a new PID namespace (its own /proc); -> (host PID, nsenter prefix)."""
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("unshare/nsenter (util-linux) are not installed")
    started = []

    def start(argv, port):
        app_dir = make_app(tmp_path)
        unshare = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "env", "PORT=%d" % port, PYTHON,
                                    "-m", "gunicorn"] + argv, cwd=str(app_dir), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        started.append(unshare.pid)
        main = wait_for(lambda: next(iter(psutil.Process(unshare.pid).children()), None), 20, "the container's PID 1")
        return app_dir, main.pid, ["nsenter", "-t", str(main.pid), "-p", "-m", "--"]

    yield start
    for pid in started:
        stop_tree(pid)


def test_gunicorn_as_pid_1_of_a_container_is_one_healthy_master(container, tmp_path):
    port = free_port()
    app_dir, main, inside = container(["AgentLocator.main:app", "-w", "2", "-b", "0.0.0.0:%d" % port,
                                       "--no-control-socket", "--error-logfile", str(tmp_path / "gunicorn.log")], port)
    wait_for(lambda: healthz(port) == 200, 30, "the container's gunicorn serving")
    (tmp_path / "run").mkdir()
    report, dummy = diagnose(tmp_path / "run", {"doctor_chdir": str(app_dir), "doctor_port": port,
                                                "doctor_log_file": str(tmp_path / "gunicorn.log")}, prefix=inside)

    assert report["verdict"] == "healthy", report["causes"]   # was multiple_runners: its two workers taken for masters
    assert report["settings"]["pid"] == 1
    masters = [c for c in next(l for l in report["layers"] if l["name"] == "process")["checks"]
               if c["name"].startswith("gunicorn master ")]
    assert [c["name"] for c in masters] == ["gunicorn master 1"]
    assert "started by platform: PID 1 of its PID namespace: a container's main process" in masters[0]["detail"]


def test_stabilize_never_signals_a_containers_pid_1(container, tmp_path):
    port, wrong = free_port(), free_port()
    app_dir, main, inside = container(["AgentLocator.main:app", "-b", "0.0.0.0:%d" % wrong, "--no-control-socket",
                                       "--error-logfile", str(tmp_path / "gunicorn.log")], wrong)
    wait_for(lambda: healthz(wrong) == 200, 30, "the container's gunicorn serving")
    (tmp_path / "diag").mkdir()
    report, dummy = diagnose(tmp_path / "diag", {"doctor_chdir": str(app_dir), "doctor_port": port,
                                                 "doctor_log_file": str(tmp_path / "gunicorn.log")}, prefix=inside)
    assert cause_ids(report, "fail") == ["wrong_port"], report["causes"]
    assert "master 1 listens on 0.0.0.0:%d" % wrong in " ".join(cause(report, "wrong_port")["evidence"])

    done = run_playbook("stabilize.yml", tmp_path, {
        "doctor_chdir": str(app_dir), "doctor_port": port, "doctor_log_file": str(tmp_path / "gunicorn.log"),
        "doctor_service_dir": str(tmp_path / "svc"), "doctor_stop_grace": 5,
        "doctor_service_manager": "standalone"}, check=False, prefix=inside)
    assert done.returncode != 0
    assert alive(main) and healthz(wrong) == 200   # untouched
    record = json.loads((tmp_path / "reports" / "target.stabilize.json").read_text())
    assert "gunicorn master is PID 1 of this PID namespace, a container's main process" in record["summary"]
    assert not any(a["action"] == "wrote service file" for a in record["actions"])   # refused before any change
