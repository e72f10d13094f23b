"""Time diagnose.yml on a healthy local service, and the hand-written baseline beside it.

    .venv/bin/python benchmarks/diagnose_bench.py [--runs 5]

Starts the demo app under gunicorn on a free loopback port (stopped by PID at the end), waits until
its master is older than the stability window (a healthy, settled service needs one /healthz sample),
then runs each playbook --runs times over a local connection and prints the median wall time, the
ratio to the baseline and the time each probe took inside the one module call.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import psutil  # noqa: E402
from doctor_run import ansible_env, DEMO_APP, PYTHON  # noqa: E402
from gunicorn_service import GunicornService, free_port  # noqa: E402

WINDOW = 15
BASELINE = "baseline (12 builtin tasks)"


def run(playbook, inventory):
    started = time.time()
    done = subprocess.run([str(Path(PYTHON).parent / "ansible-playbook"), "-i", str(inventory), str(playbook)],
                          cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    if done.returncode:
        sys.exit("%s failed:\n%s" % (playbook, done.stdout[-3000:]))
    return time.time() - started


def youngest_start(pid):
    """Start time of the youngest process of the service (master or worker)."""
    master = psutil.Process(pid)
    return max(p.create_time() for p in [master] + master.children())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="doctor-bench-"))
    port = free_port()
    service = GunicornService(DEMO_APP, "AgentLocator.main:app", work / "gunicorn.log", bind="0.0.0.0:%d" % port,
                              env={"PORT": str(port)}, python=PYTHON)
    service.start()
    try:
        service.wait_ready()
        print("waiting until the service is %d s old (a settled healthy service)..." % WINDOW, flush=True)
        while time.time() - youngest_start(service.pid) < WINDOW:
            time.sleep(0.2)
        inventory = work / "inventory.json"
        inventory.write_text(json.dumps({"all": {"hosts": {"bench": {
            "ansible_connection": "local", "ansible_python_interpreter": PYTHON,
            "doctor_app": "AgentLocator.main:app", "doctor_chdir": str(DEMO_APP), "doctor_python": PYTHON,
            "doctor_port": port, "doctor_log_file": str(work / "gunicorn.log"),
            "doctor_report_dir": str(work / "reports")}}}}))
        results = {}
        server_only = work / "inventory-server-layers.json"
        data = json.loads(inventory.read_text())
        data["all"]["hosts"]["bench"]["doctor_voice_checks"] = False
        server_only.write_text(json.dumps(data))
        for name, playbook, inv in (
                ("diagnose.yml", ROOT / "playbooks" / "diagnose.yml", inventory),
                ("diagnose.yml, server layers", ROOT / "playbooks" / "diagnose.yml", server_only),
                (BASELINE, ROOT / "benchmarks" / "runbook_baseline.yml", inventory)):
            times = [run(playbook, inv) for dummy in range(args.runs)]
            results[name] = statistics.median(times)
            print("%-28s median %.2f s  (runs: %s)" % (name, results[name], ", ".join("%.2f" % t for t in times)))
        report = json.loads((work / "reports" / "bench.json").read_text())
        print("verdict: %s" % report["verdict"])
        for name in ("diagnose.yml", "diagnose.yml, server layers"):
            print("%s / baseline = %.2f" % (name, results[name] / results[BASELINE]))
        print("(target for the server-side ladder: <= 0.5; the voice layer adds its one-second simulated call)")
        print("time per probe inside the one module call (last run):")
        for probe, seconds in sorted(report["timings"].items(), key=lambda kv: -kv[1]):
            print("  %-12s %.3f s" % (probe, seconds))
    finally:
        service.stop()


if __name__ == "__main__":
    main()
