"""Time audit.yml against the hand-written baseline on the same SSH hosts, 1 host and N hosts, in one run.

    sudo .venv/bin/python benchmarks/audit_bench.py [--hosts 20] [--runs 3] [--forks N]

Builds N hosts as network namespaces on this machine (tests/integration/netns_hosts.py: each with
its own sshd and its own healthy gunicorn service of the demo app), waits until every service is
older than the stability window (a settled healthy fleet: one /healthz sample per host), then runs
benchmarks/runbook_baseline.yml and playbooks/audit.yml alternately over SSH (pipelining on, as
ansible.cfg sets it; --forks for both, default N), --runs times each, first against one host, then
against all N. Every run starts cold: the ssh ControlPersist masters of the previous run are stopped
first, as they would be for a scheduled audit. Prints the medians and audit / baseline per size.
Needs root (namespaces); every process it starts is stopped by PID, the namespaces are deleted.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import netns_hosts  # noqa: E402
from doctor_run import PYTHON, ansible_env, make_app  # noqa: E402

WINDOW = 15      # doctor_stability_window's default
PORT = 8000


def playbook_run(playbook, inventory, limit, forks, fleet, extra=()):
    fleet.stop_ssh_masters()
    started = time.time()
    done = subprocess.run([str(Path(PYTHON).parent / "ansible-playbook"), "-i", str(inventory), "--limit", limit,
                           "-f", str(forks), str(playbook)] + list(extra), cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False, timeout=900)
    seconds = time.time() - started
    if done.returncode:
        sys.exit("%s failed:\n%s" % (playbook.name, done.stdout[-4000:]))
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20, help="the fleet size N (default 20)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each playbook per size (default 3)")
    parser.add_argument("--forks", type=int, default=0, help="ansible forks for both playbooks (default N)")
    parser.add_argument("--with-diagnose", action="store_true",
                        help="time diagnose.yml too (what audit.yml adds to the per-host diagnosis)")
    parser.add_argument("--sizes", default="", help="comma-separated fleet sizes to time (default: 1,N)")
    parser.add_argument("-e", dest="extra_vars", action="append", default=[],
                        help="extra variables for audit.yml only, e.g. -e doctor_voice_checks=false")
    args = parser.parse_args()
    why = netns_hosts.usable()
    if why:
        sys.exit("audit_bench: %s" % why)
    netns_hosts.ensure_packages()
    forks = args.forks or args.hosts
    work = Path(tempfile.mkdtemp(prefix="doctor-audit-bench-"))
    names = ["h%02d" % i for i in range(1, args.hosts + 1)]
    with netns_hosts.Fleet(work / "fleet", names) as fleet:
        print("starting %d hosts (sshd + gunicorn each)..." % len(names), flush=True)
        hosts = {}
        for name in names:
            host = fleet[name]
            app_dir = make_app(host.dir)
            (host.dir / "service.env").write_text("PORT=%d\n" % PORT)
            host.start_gunicorn(app_dir, "0.0.0.0:%d" % PORT, env={"PORT": str(PORT)}, log=host.dir / "app.log",
                                wait=False)
            hosts[name] = dict(fleet.connection_vars(name, PYTHON), doctor_app="AgentLocator.main:app",
                               doctor_chdir=str(app_dir), doctor_python=PYTHON, doctor_port=PORT,
                               doctor_env_file=str(host.dir / "service.env"), doctor_log_file=str(host.dir / "app.log"))
        inventory = work / "inventory.json"
        inventory.write_text(json.dumps({"all": {"vars": {"doctor_report_dir": str(work / "reports")},
                                                 "hosts": hosts}}))
        settled = time.time() + WINDOW + 1
        print("waiting until every service is older than the %d s stability window..." % WINDOW, flush=True)
        time.sleep(max(0, settled - time.time()))

        playbooks = [("baseline", ROOT / "benchmarks" / "runbook_baseline.yml"), ("audit", ROOT / "playbooks" / "audit.yml")]
        if args.with_diagnose:
            playbooks.append(("diagnose", ROOT / "playbooks" / "diagnose.yml"))
        results = []
        sizes = [int(n) for n in args.sizes.split(",") if n] or [1, len(names)]
        extra = [arg for pair in args.extra_vars for arg in ("-e", pair)]
        for size in sorted(set(min(n, len(names)) for n in sizes)):
            limit = ",".join(names[:size])
            times = dict((label, []) for label, dummy in playbooks)
            for dummy in range(args.runs):
                for label, playbook in playbooks:
                    times[label].append(playbook_run(playbook, inventory, limit, min(forks, size), fleet,
                                                     extra if label != "baseline" else ()))
            medians = dict((label, statistics.median(t)) for label, t in times.items())
            results.append((size, medians, times))
            for label, dummy in playbooks:
                runs = ", ".join("%.2f" % t for t in times[label])
                print("%2d host(s)  %-8s median %6.2f s  (runs: %s)" % (size, label, medians[label], runs), flush=True)
            print("%2d host(s)  audit / baseline = %.2f (target <= 0.5)" % (size, medians["audit"] / medians["baseline"]),
                  flush=True)
        audit = json.loads((work / "reports" / "audit.json").read_text())
        print("last audit: %s" % ", ".join("%d %s" % (n, v) for v, n in audit["summary"]["by_verdict"].items()))
        print("summary: " + "; ".join("%d host(s): audit %.2f s, baseline %.2f s, ratio %.2f" % (
            size, m["audit"], m["baseline"], m["audit"] / m["baseline"]) for size, m, dummy in results))
    shutil.rmtree(str(work), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
