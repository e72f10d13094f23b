"""Time audit.yml, the hand-written baseline and Ansible's floor on the same SSH hosts, 15, 50 and 100 hosts, in one run.

    sudo .venv/bin/python benchmarks/audit_bench.py [--sizes 15,50,100] [--runs 2] [--forks N]

Builds the largest fleet as network namespaces on this machine (tests/integration/netns_hosts.py: each
host with its own sshd and its own gunicorn service of the demo app), a realistic mix: most hosts
healthy, some broken one way each (not running, bound to loopback only, /healthz 500, wrong port, the
app not deployed where the inventory says), one unreachable (sshd stopped). It waits until every
service is older than the stability window and the machine is quiet (the services have booted), then
for each size (the first N hosts) runs, --runs times and alternately: benchmarks/floor.yml (one ping
task: the least any Ansible play costs),
benchmarks/runbook_baseline.yml (the runbook's checks by hand) and playbooks/audit.yml, all over SSH
with pipelining (ansible.cfg) and --forks (default: the size). Every run starts cold: the ssh
ControlPersist masters of the run before are stopped first, as for a scheduled audit.

Per run it measures the wall time, the controller's CPU seconds (user + system of ansible-playbook and
every process it waited for: os.wait4's rusage), its peak memory (the largest max RSS among them) and the
hosts' CPU (the machine's busy CPU seconds over the run, /proc/stat, less the controller's: each host's
sshd, probe and service, which share this machine's cores with the controller).
Every audit's findings are checked against the mix (verdict, failed layer, cause or error kind per host)
and, from the second audit of a size on, its drift must be empty (nothing changed). Prints a Markdown
table of the medians (per host, and audit / baseline, audit / floor) and the goals at the largest size.
Needs root (namespaces); every process it starts is stopped by PID, the namespaces are deleted.
"""

import argparse
import json
import os
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
from test_audit import APP, failing_healthz  # noqa: E402

WINDOW = 15      # doctor_stability_window's default
PORT = 8000
PLAYBOOKS = (("floor", ROOT / "benchmarks" / "floor.yml"),
             ("baseline", ROOT / "benchmarks" / "runbook_baseline.yml"),
             ("audit", ROOT / "playbooks" / "audit.yml"))

# kind of host -> (verdict, failed layer, the fail cause id or the error kind) the audit must find
EXPECTED = {
    "healthy": ("healthy", None, None),
    "not_listening": ("down", "listen", "not_listening"),            # deployed, nothing runs it
    "bind_loopback_only": ("degraded", "listen", "bind_loopback_only"),
    "healthz_error": ("down", "healthz", "healthz_error"),           # /healthz raises: 500
    "wrong_port": ("down", "listen", "wrong_port"),                  # PORT=8123, -b 0.0.0.0:5000
    "not_deployed": ("down", None, "not_deployed"),                  # doctor_chdir does not exist
    "unreachable": ("unreachable", None, "unreachable"),             # sshd stopped
}
WRONG = []       # (playbook, size, run) of the audits whose findings were not the mix's
BROKEN = ("not_listening", "bind_loopback_only", "healthz_error", "wrong_port", "not_deployed")


def kind_of(index):
    """The mix, by 1-based host index: h08 unreachable; each broken kind once among the first 15 (every
    third host), then every tenth host broken, the kinds in turn. 100 hosts: 85 healthy, 14 broken, 1 unreachable."""
    if index == 8:
        return "unreachable"
    if index <= 15 and index % 3 == 0:
        return BROKEN[index // 3 - 1]
    if index > 15 and index % 10 == 0:
        return BROKEN[(index // 10) % len(BROKEN)]
    return "healthy"


def set_up(fleet, name, kind):
    """Break host `name` the way `kind` says; -> its inventory variables."""
    host = fleet[name]
    app_dir = make_app(host.dir, failing_healthz if kind == "healthz_error" else None)
    port = 8123 if kind == "wrong_port" else PORT
    (host.dir / "service.env").write_text("PORT=%d\n" % port)
    log = host.dir / "app.log"
    if kind in ("not_listening", "unreachable"):
        log.write_text("")
    else:
        bind = {"bind_loopback_only": "127.0.0.1:%d" % PORT, "wrong_port": "0.0.0.0:5000"}.get(kind, "0.0.0.0:%d" % port)
        host.start_gunicorn(app_dir, bind, env={"PORT": str(port)}, log=log, wait=False)
    if kind == "unreachable":
        host.stop_sshd()
    chdir = host.dir / "not-deployed" if kind == "not_deployed" else app_dir
    return dict(fleet.connection_vars(name, PYTHON), doctor_app=APP, doctor_chdir=str(chdir), doctor_python=PYTHON,
                doctor_port=PORT, doctor_env_file=str(host.dir / "service.env"), doctor_log_file=str(log))


def findings(audit, expected):
    """host -> (verdict, failed layer, the expected cause when it is among the fail causes or is the error
    kind, else what was found instead), as the audit found them."""
    found = {}
    for host, report in audit["reports"].items():
        fails = [c["id"] for c in report["causes"] if c["severity"] == "fail"]
        kind = (report.get("error") or {}).get("kind")
        cause = (expected.get(host) or (None,) * 3)[2]
        found[host] = (report["verdict"], report["failed_layer"], cause if cause in fails or cause == kind else (fails, kind))
    return found


def not_passed(report):
    """The warn and fail checks of a host's report: why a finding is not the expected one."""
    return ["%s / %s %s: %s" % (layer["name"], check["name"], check["status"], check["detail"][:300])
            for layer in (report or {}).get("layers", []) for check in layer["checks"] if check["status"] in ("warn", "fail")]


def check_audit(report_dir, kinds, names, first):
    """Exit when the audit's findings are not the mix's, or (after the first audit) its drift is not empty."""
    audit = json.loads((report_dir / "audit.json").read_text())
    expected = dict((name, EXPECTED[kinds[name]]) for name in names)
    found = findings(audit, expected)
    wrong = dict((h, (found.get(h), expected[h])) for h in expected if found.get(h) != expected[h])
    problems = []
    if wrong or len(found) != len(expected):
        problems.append("%d finding(s) wrong (found, expected): %s" % (len(wrong), wrong))
        problems += ["%s: %s" % (host, why) for host in sorted(wrong)[:3] for why in not_passed(audit["reports"].get(host))]
    drift = audit["drift"]
    if not first and any(drift[k] for k in ("new", "fixed", "changed", "added", "removed")):
        problems.append("drift between two audits of an unchanged fleet: %s" % drift)
    for problem in problems:      # said, and the timing still reported: a wrong finding under load is a result too
        print("AUDIT WRONG: %s" % problem, flush=True)
    return not problems


def busy_cpu_seconds():
    """CPU seconds this machine has spent busy since boot (/proc/stat: all but idle and iowait): the hosts, their
    services and the controller share it here, so a run's share is the difference."""
    with open("/proc/stat") as stat:
        fields = [int(f) for f in stat.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit=180.0, busy_max=0.25):
    """Until the machine has been quiet for 2 s (under `busy_max` CPU seconds busy per second: the hosts' services
    have booted) or `limit` s have passed; -> seconds waited. A hundred gunicorns import the app for ~30 CPU seconds
    after they start: a run timed meanwhile (the first floor, when it ran first) paid for their boots."""
    started, quiet = time.time(), 0
    while quiet < 2 and time.time() - started < limit:
        before = busy_cpu_seconds()
        time.sleep(1)
        quiet = quiet + 1 if busy_cpu_seconds() - before < busy_max else 0
    return time.time() - started


def playbook_run(playbook, inventory, limit, forks, fleet, log, extra=(), profile=None, collections=None):
    """-> (wall seconds, controller CPU seconds, peak max RSS in MB, the machine's busy CPU seconds: controller, hosts
    and their services) of one ansible-playbook run. `profile`: a directory
    for cProfile's stats of the controller's main process and each worker (benchmarks/profile_controller.py);
    `collections`: the collections path of another checkout (--compare)."""
    fleet.stop_ssh_masters()
    argv = [str(Path(PYTHON).parent / "ansible-playbook"), "-i", str(inventory), "--limit", limit, "-f", str(forks),
            str(playbook)] + list(extra)
    if profile:
        argv = [PYTHON, str(ROOT / "benchmarks" / "profile_controller.py"), str(profile)] + argv
    with open(log, "w") as out:
        started, busy = time.time(), busy_cpu_seconds()
        env = dict(ansible_env(), **({"ANSIBLE_COLLECTIONS_PATH": str(collections)} if collections else {}))
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        dummy, status, usage = os.wait4(proc.pid, 0)
        seconds, busy = time.time() - started, busy_cpu_seconds() - busy
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = Path(log).read_text()
    if "PLAY RECAP" not in text:      # the baseline and the floor fail on the unreachable host: that is expected
        sys.exit("%s did not run to its recap:\n%s" % (playbook.name, text[-4000:]))
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, busy


def playbooks(compare):
    """(label, playbook, collections path or None) in the order they run: with --compare CHECKOUT, that checkout's
    audit.yml (label `before`) runs before ours, on the same hosts in the same run."""
    found = [(label, playbook, None) for label, playbook in PLAYBOOKS]
    if compare:
        found.insert(2, ("before", Path(compare) / "playbooks" / "audit.yml", Path(compare) / ".collections"))
    return found


def time_size(size, names, kinds, inventory, args, fleet, work):
    """Every playbook --runs times on the first `size` hosts; -> label -> list of (wall, cpu, rss)."""
    limit = ",".join(names[:size])
    forks = min(args.forks or size, size)
    times = dict((label, []) for label, dummy, dummy in playbooks(args.compare))
    for run in range(args.runs):
        for label, playbook, collections in playbooks(args.compare):
            if label in args.skip.split(","):
                continue
            log = work / ("%s-%d-%d.log" % (label, size, run))
            profile = Path(args.profile) / ("%s-%d-%d" % (label, size, run)) if args.profile else None
            report_dir = work / ("reports-%s-%d" % (label, size))
            extra = ["-e", "doctor_report_dir=%s" % report_dir, "-e", "doctor_audit_fail_on_down=false"]
            times[label].append(playbook_run(playbook, inventory, limit, forks, fleet, log,
                                             extra if label in ("audit", "before") else (), profile, collections))
            if label in ("audit", "before") and not check_audit(report_dir, kinds, names[:size], run == 0):
                WRONG.append((label, size, run + 1))
            wall, cpu, rss, busy = times[label][-1]
            print("%3d hosts  %-8s run %d: %6.2f s wall, %6.2f s CPU, %5.0f MB max RSS; the machine busy %6.1f CPU s "
                  "(the hosts and services: %.0f ms per host)  (load %.2f)" % (
                      size, label, run + 1, wall, cpu, rss, busy, 1000 * (busy - cpu) / size, os.getloadavg()[0]),
                  flush=True)
    return times


def medians(times):
    """label -> [wall, cpu, rss, busy] medians, for the playbooks that ran (--skip leaves some out)."""
    return dict((label, [statistics.median(run[i] for run in runs) for i in range(4)]) for label, runs in times.items() if runs)


def ratio(value, med, label):
    return "%.2fx" % (value / med[label][0]) if label in med else "-"


def table(results):
    """The Markdown table of the medians."""
    lines = ["| hosts | playbook | wall s | wall / host | controller CPU s | CPU / host | peak RSS MB | "
             "hosts' CPU / host | vs baseline | vs floor |", "|---|---|---|---|---|---|---|---|---|---|"]
    for size, times in results:
        med = medians(times)
        for label in [label for label in ("floor", "baseline", "before", "audit") if label in med]:
            wall, cpu, rss, busy = med[label]
            lines.append("| %d | %s | %.1f | %.0f ms | %.1f | %.0f ms | %.0f | %.0f ms | %s | %s |" % (
                size, label, wall, 1000 * wall / size, cpu, 1000 * cpu / size, rss, 1000 * (busy - cpu) / size,
                ratio(wall, med, "baseline"), ratio(wall, med, "floor")))
    return lines


def goals(results):
    """The goals at the largest size: audit <= 0.2x the baseline, <= 2x the floor, CPU per host flat."""
    (small, first), (big, last) = results[0], results[-1]
    first, last = medians(first), medians(last)
    if "audit" not in last:
        return []
    growth = (last["audit"][1] / big) / (first["audit"][1] / small)
    return ["at %d hosts: audit / baseline %s (goal <= 0.2), audit / floor %s (goal <= 2); audit CPU per host "
            "at %d hosts / at %d hosts: %.2f (goal <= 1: flat)" % (
                big, ratio(last["audit"][0], last, "baseline"), ratio(last["audit"][0], last, "floor"), big, small, growth)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="15,50,100", help="comma-separated fleet sizes (default 15,50,100)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each playbook per size (default 2)")
    parser.add_argument("--forks", type=int, default=0, help="ansible forks (default: the size)")
    parser.add_argument("--keep", action="store_true", help="keep the reports and logs (printed: the work directory)")
    parser.add_argument("--profile", metavar="DIR", help="cProfile each run's controller (main process and workers) "
                        "into DIR/LABEL-SIZE-RUN/ (read with benchmarks/profile_controller.py --show)")
    parser.add_argument("--skip", default="", help="comma-separated playbooks not to time (floor, baseline, audit)")
    parser.add_argument("--compare", metavar="CHECKOUT", help="also time the audit.yml of another checkout of the "
                        "collection (its .collections links it, e.g. `git archive main` unpacked and bootstrapped), as "
                        "`before`, on the same hosts in the same run")
    args = parser.parse_args()
    why = netns_hosts.usable()
    if why:
        sys.exit("audit_bench: %s" % why)
    netns_hosts.ensure_packages()
    sizes = sorted(set(int(n) for n in args.sizes.split(",") if n))
    work = Path(tempfile.mkdtemp(prefix="doctor-audit-bench-"))
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    names = ["h%03d" % i for i in range(1, sizes[-1] + 1)]
    kinds = dict((name, kind_of(i)) for i, name in enumerate(names, start=1))
    print("load before: %.2f %.2f %.2f on %d CPUs" % (os.getloadavg() + (os.cpu_count(),)), flush=True)
    with netns_hosts.Fleet(work / "fleet", names) as fleet:
        hosts = dict((name, set_up(fleet, name, kinds[name])) for name in names)
        print("%d hosts up (sshd + gunicorn each); waiting until every service is older than the %d s stability "
              "window..." % (len(names), WINDOW), flush=True)
        settled = time.time() + WINDOW + 1
        inventory = work / "inventory.json"
        inventory.write_text(json.dumps({"all": {"hosts": hosts}}))
        time.sleep(max(0, settled - time.time()))
        print("the machine quiet after %.0f s more (load %.2f)" % (wait_quiet(), os.getloadavg()[0]), flush=True)
        results = [(size, time_size(size, names, kinds, inventory, args, fleet, work)) for size in sizes]
    print("load after: %.2f %.2f %.2f" % os.getloadavg())
    for size in sizes:
        mix = [kinds[n] for n in names[:size]]
        print("%d hosts: %d healthy, %d broken, %d unreachable" % (
            size, mix.count("healthy"), len(mix) - mix.count("healthy") - mix.count("unreachable"), mix.count("unreachable")))
    print("\n".join(table(results) + goals(results)))
    print("audit findings: %s" % ("all right in every run" if not WRONG else "WRONG in (playbook, hosts, run) %s" % WRONG))
    if args.keep:
        shutil.rmtree(str(work / "fleet"), ignore_errors=True)
        print("reports and logs kept in %s" % work)
    else:
        shutil.rmtree(str(work), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
