"""stabilize.yml on real broken hosts: strays, a wrong port, old logs, decoys; the standalone pidfile
runner and a real supervisord (from the venv); systemd units rendered and verified; check mode.

Everything lives in tmp dirs and listens on loopback or on ports the kernel hands out; every process a
test starts is stopped by its PID (the service by the PID in its pidfile or through supervisorctl).
"""

import gzip
import hashlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from doctor_run import PYTHON, ROOT, ansible_env, make_app, run_playbook
from gunicorn_service import free_port

VENV_BIN = Path(PYTHON).parent
TOKEN = "tok-6d1f0c2ab93e"  # a credential the service's runner gives it: never printed
OLD_LOG_LINE = "[2026-11-20 10:00:00 +0000] [4242] [INFO] an incident from an earlier run (marker 7f3a)"


# --- processes ---------------------------------------------------------------------------------------
def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def listening_pid(port):
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr[1] == port:
            return conn.pid or True
    return None


def serves(master, port):
    """The master (or a worker sharing its socket: psutil names either) LISTENs on port."""
    family = {master} | {c.pid for c in psutil.Process(master).children()}
    return listening_pid(port) in family


def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_tree(pid, grace=5):
    """TERM a process we started and its descendants, by PID; KILL what is left."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [root] + root.children(recursive=True)
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    deadline = time.time() + grace
    while any(alive(p.pid) for p in procs) and time.time() < deadline:
        time.sleep(0.05)
    for p in procs:
        if alive(p.pid):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


def healthz(port, path="/healthz"):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=3) as resp:
            return resp.status
    except OSError:
        return None


def stable_200(port, seconds=2.0):
    """/healthz answers 200 on every request for `seconds`."""
    end = time.time() + seconds
    while time.time() < end:
        assert healthz(port) == 200, "/healthz on %d is not a stable 200" % port
        time.sleep(0.2)


class Host:
    """A broken host in tmp_path: the app, its env file (PORT), old logs, strays and decoys."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.port = free_port()
        self.app_dir = make_app(tmp_path)
        self.env_file = tmp_path / "service.env"
        self.env_file.write_text("PORT=%d\nPUBLIC_BASE_URL=https://voice.example.com\n" % self.port)
        self.log = tmp_path / "logs" / "gunicorn.log"
        self.log.parent.mkdir()
        self.service_dir = tmp_path / "svc"
        self.started = []      # pids we started (stopped by PID at the end)
        self.strays = []       # pids stabilize must stop
        self.decoys = []       # pids stabilize must leave alone

    def spawn(self, argv, cwd, env=None, out=None):
        with open(out or os.devnull, "ab") as sink:
            proc = subprocess.Popen(argv, cwd=str(cwd), env=dict(os.environ, **(env or {})), stdin=subprocess.DEVNULL,
                                    stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(proc.pid)
        return proc.pid

    def old_logs(self):
        """A log from an earlier run, and a rotated sibling: both must be recoverable afterwards."""
        self.log.write_text(OLD_LOG_LINE + "\n")
        (self.log.parent / "gunicorn.log.1").write_text("rotated " + OLD_LOG_LINE + "\n")

    def wrong_port_master(self):
        """The runbook's cause 1: PORT is set, the command hard-codes another port."""
        wrong = free_port()
        pid = self.spawn([PYTHON, "-m", "gunicorn", "AgentLocator.main:app", "-b", "0.0.0.0:%d" % wrong,
                          "--no-control-socket", "--error-logfile", str(self.tmp / "wrong.log")], self.app_dir,
                         env={"PORT": str(self.port)})
        wait_for(lambda: listening_pid(wrong), 20, "the wrong-port master")
        self.strays.append(pid)
        return pid

    def dev_server(self):
        dev = free_port()
        pid = self.spawn([PYTHON, "-m", "AgentLocator.main"], self.app_dir, env={"PORT": str(dev)})
        wait_for(lambda: listening_pid(dev), 20, "the dev server")
        self.strays.append(pid)
        return pid

    def decoys_start(self):
        other = make_app(self.tmp / "other-checkout")   # the same app spec in another directory: another app
        other_port = free_port()
        self.decoys.append(self.spawn([PYTHON, "-m", "gunicorn", "AgentLocator.main:app", "-b", "127.0.0.1:%d" % other_port,
                                       "--no-control-socket"], other))
        web = free_port()
        self.decoys.append(self.spawn(["python3", "-m", "http.server", "-b", "127.0.0.1", str(web)], self.app_dir))
        self.decoys.append(self.spawn(["python3", "-c", "import time; time.sleep(600)"], self.app_dir))
        wait_for(lambda: listening_pid(other_port) and listening_pid(web), 20, "the decoys")

    def assert_decoys_alive(self):
        dead = [pid for pid in self.decoys if not alive(pid)]
        assert not dead, "decoys were stopped: %s" % dead

    def assert_strays_gone(self):
        left = [pid for pid in self.strays if alive(pid)]
        assert not left, "strays still alive: %s" % left

    def vars(self, **extra):
        return dict({
            "doctor_chdir": str(self.app_dir),
            "doctor_env_file": str(self.env_file),
            "doctor_log_file": str(self.log),
            "doctor_service_dir": str(self.service_dir),
            "doctor_stop_grace": 5,
            "doctor_verify_timeout": 30,
        }, **extra)

    def service_pid(self):
        pidfile = self.service_dir / "run" / "gunicorn.pid"
        return int(pidfile.read_text()) if pidfile.exists() else None

    def cleanup(self):
        pid = self.service_pid()
        if pid:
            stop_tree(pid)
        for pid in reversed(self.started):
            stop_tree(pid)


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    try:
        yield h
    finally:
        h.cleanup()


# The clean-up task (runbook 1.1: stop_strays) as the play shows it when it runs.
CLEAN_UP_TASK = "Stop the app's earlier runs, archive old logs - never the service's own master"
PASS_TASK = "Find what runs the service, then run the canonical command in it"


# --- the playbook --------------------------------------------------------------------------------------
def stabilize(tmp_path, host_vars, extra_args=(), check=True):
    done = run_playbook("stabilize.yml", tmp_path, host_vars, extra_args, check=check)
    return done.stdout


def recap(out):
    m = re.search(r"^target\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)\s+"
                  r"rescued=(\d+)\s+ignored=(\d+)", out, re.M)
    assert m, "no PLAY RECAP in:\n" + out[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored"), map(int, m.groups())))


def assert_idempotent(out):
    counts = recap(out)
    changed_tasks, task = [], None
    for line in out.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line
        elif line.startswith("changed:"):
            changed_tasks.append("%s -> %s" % (task, line))
    assert counts["changed"] == 0 and not changed_tasks, "second run changed something:\n%s\n%s" % (
        "\n".join(changed_tasks), out[-4000:])
    assert counts["failed"] == 0


def stabilize_report(tmp_path):
    return json.loads((tmp_path / "reports" / "target.stabilize.json").read_text())


def archived_texts(archive_dir):
    texts = []
    for gz in Path(archive_dir).rglob("*.gz"):
        with gzip.open(gz, "rt") as f:
            texts.append(f.read())
    return texts


def tree_digest(path):
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(full.encode())
            with open(full, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def app_pids(app_dir):
    """Live processes whose cwd is the app directory (the service, strays and the in-dir decoys)."""
    found = set()
    for proc in psutil.process_iter(["pid", "cwd", "status"]):
        if proc.info["cwd"] == str(app_dir) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.add(proc.info["pid"])
    return found


# --- standalone --------------------------------------------------------------------------------------------
def test_standalone_broken_host_is_stabilized_then_unchanged(host, tmp_path):
    host.old_logs()
    host.wrong_port_master()
    host.dev_server()
    host.decoys_start()

    out = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))

    assert recap(out)["failed"] == 0
    stable_200(host.port)
    master = host.service_pid()
    assert master and serves(master, host.port)
    cmdline = psutil.Process(master).cmdline()
    assert "0.0.0.0:%d" % host.port in cmdline and "sync" in cmdline
    host.assert_strays_gone()
    host.assert_decoys_alive()
    # The start script reads PORT from the environment at start: no port in the command.
    script = (host.service_dir / "run.sh").read_text()
    assert "-b 0.0.0.0:${PORT}" in script and str(host.port) not in script
    report = stabilize_report(tmp_path)
    assert report["result"] == "stabilized" and report["before"]["verdict"] == "down"
    assert report["after"]["verdict"] in ("healthy", "degraded") and report["port"] == host.port
    stopped = [a for a in report["actions"] if a["action"] == "stopped process"]
    for pid in host.strays:
        entry = [a for a in stopped if a["target"].startswith("%d " % pid)]
        assert entry and entry[0]["reason"], "stray %d not reported with its reason: %s" % (pid, stopped)
    # Every log that existed before is recoverable from the archive.
    texts = archived_texts(host.service_dir / "log-archive")
    assert any(OLD_LOG_LINE in t and not t.startswith("rotated") for t in texts)
    assert any(t.startswith("rotated " + OLD_LOG_LINE) for t in texts)
    assert OLD_LOG_LINE not in host.log.read_text()

    assert CLEAN_UP_TASK in out
    again = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))
    assert_idempotent(again)
    assert host.service_pid() == master
    stable_200(host.port, 1)
    host.assert_decoys_alive()
    assert stabilize_report(tmp_path)["actions"] == []
    # Nothing was left to clean up: stop_strays did not run (one module call less), and the plan says why.
    assert CLEAN_UP_TASK not in again and "nothing to clean up" in again
    # The diagnosis' own call found the sync pass changing nothing (stabilize/preview.py): it is not made again.
    assert PASS_TASK not in again and "stable: /healthz answers 200 on port %d, master %d" % (host.port, master) in again

    # A runner file edited by hand since: the preview sees the difference, the pass runs and writes it back.
    script_path = host.service_dir / "run.sh"
    script_path.write_text(script.replace("--timeout 60", "--timeout 61"))
    edited = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))
    assert recap(edited)["failed"] == 0 and PASS_TASK in edited and recap(edited)["changed"] >= 1
    assert script_path.read_text() == script
    master = host.service_pid()
    assert master and "61" not in psutil.Process(master).cmdline()
    stable_200(host.port, 1)

    # Something to clean again (an earlier run's dev server, a rotated log): the clean-up runs as on the first run.
    stray = host.dev_server()
    rotated = host.log.parent / "gunicorn.log.2"
    rotated.write_text("rotated again " + OLD_LOG_LINE + "\n")
    # Older than the running master: a log of an earlier run (one written since it started is the current run's).
    before_master = psutil.Process(master).create_time() - 60
    os.utime(str(rotated), (before_master, before_master))
    third = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"))
    assert recap(third)["failed"] == 0 and CLEAN_UP_TASK in third
    assert not alive(stray) and host.service_pid() == master
    assert not rotated.exists()
    assert any(t.startswith("rotated again ") for t in archived_texts(host.service_dir / "log-archive"))
    actions = [a["action"] for a in stabilize_report(tmp_path)["actions"]]
    assert "stopped process" in actions and "archived log" in actions
    host.assert_decoys_alive()


def test_check_mode_changes_nothing_and_shows_the_command(host, tmp_path):
    host.old_logs()
    wrong = host.wrong_port_master()
    host.dev_server()
    host.decoys_start()
    wait_for(lambda: psutil.Process(wrong).children(), 20, "the wrong-port master's worker")
    before_procs = app_pids(host.app_dir) | {p.pid for p in psutil.Process(wrong).children()}
    before_files = tree_digest(tmp_path / "app"), tree_digest(host.log.parent), host.env_file.read_text()

    out = stabilize(tmp_path, host.vars(doctor_service_manager="standalone"), ["--check", "--diff"])

    assert recap(out)["failed"] == 0
    assert not host.service_dir.exists()
    assert (tree_digest(tmp_path / "app"), tree_digest(host.log.parent), host.env_file.read_text()) == before_files
    after_procs = app_pids(host.app_dir) | {p.pid for p in psutil.Process(wrong).children()}
    assert after_procs == before_procs
    # The diff shows the command that would be written; the run lists what would be stopped.
    assert "+exec %s -m gunicorn AgentLocator.main:app -k sync -w 1 -b 0.0.0.0:${PORT}" % PYTHON in out
    assert "would stop" in out and str(wrong) in out
    assert stabilize_report(tmp_path)["result"] == "check_mode"


def test_unfixable_cause_ends_early_and_changes_nothing(host, tmp_path):
    (host.app_dir / "AgentLocator" / "main.py").write_text(
        (host.app_dir / "AgentLocator" / "main.py").read_text().replace(
            "import os\n", "import os\nimport speech_client_that_is_not_installed  # noqa\n", 1))
    host.decoys_start()
    done = run_playbook("stabilize.yml", tmp_path, host.vars(doctor_service_manager="standalone"), check=False)
    assert done.returncode != 0
    assert "boot_exception" in done.stdout and "speech_client_that_is_not_installed" in done.stdout, done.stdout[-3000:]
    assert not host.service_dir.exists()
    assert (tmp_path / "reports" / "target.stabilize.json").exists(), done.stdout[-3000:]
    report = stabilize_report(tmp_path)
    assert report["result"] == "not_fixable" and report["actions"] == []
    host.assert_decoys_alive()


def test_a_foreign_port_holder_stops_stabilize_before_any_change(host, tmp_path):
    host.old_logs()
    stray = host.dev_server()
    # Not the app (another directory, another program) but on the platform's port: never stopped.
    holder = host.spawn(["python3", "-m", "http.server", "-b", "0.0.0.0", str(host.port)], tmp_path)
    wait_for(lambda: listening_pid(host.port), 20, "the foreign port holder")
    log_before = host.log.read_text()

    done = run_playbook("stabilize.yml", tmp_path, host.vars(doctor_service_manager="standalone"), check=False)

    assert done.returncode != 0
    assert "not this app" in done.stdout and str(holder) in done.stdout
    assert alive(holder) and alive(stray), "stabilize stopped something although it refused to go on"
    assert host.log.read_text() == log_before
    assert not (host.service_dir / "run.sh").exists()
    report = stabilize_report(tmp_path)
    assert report["result"] == "failed" and "not this app" in report["summary"]


# --- supervisord -------------------------------------------------------------------------------------------
def test_supervisord_broken_host_is_stabilized_then_unchanged(host, tmp_path, supervisord):
    host.old_logs()
    wrong = free_port()
    # A program of the app that hard-codes a port (and whose environment has the platform's PORT).
    (supervisord["conf_dir"] / "agentlocator.conf").write_text(
        "[program:agentlocator]\ncommand=%s -m gunicorn AgentLocator.main:app -b 0.0.0.0:%d --error-logfile %s\n"
        "directory=%s\nenvironment=PORT=\"%d\",SPEECH_LANGUAGE=\"en-US\",TWILIO_AUTH_TOKEN=\"%s\"\n"
        "autorestart=true\nstopasgroup=true\n" % (PYTHON, wrong, host.log, host.app_dir, host.port, TOKEN))
    subprocess.run(supervisord["ctl"] + ["update"], stdout=subprocess.DEVNULL, check=True)
    wait_for(lambda: listening_pid(wrong), 20, "the supervisord program on the wrong port")
    host.dev_server()
    host.decoys_start()

    # --check --diff first: nothing changes on disk or in the process table; the diff shows what would be written.
    program_before = (supervisord["conf_dir"] / "agentlocator.conf").read_text()
    procs_before = app_pids(host.app_dir)
    checked = stabilize(tmp_path, host.vars(), ["--check", "--diff", "-v"])
    assert recap(checked)["failed"] == 0
    assert (supervisord["conf_dir"] / "agentlocator.conf").read_text() == program_before
    assert app_pids(host.app_dir) == procs_before and not host.service_dir.exists()
    # The program's old content set its variables (the token): only the new content is shown.
    assert "+command=%s/run.sh" % host.service_dir in checked and "-(the old content is not shown" in checked
    assert not [line for line in program_before.splitlines() if line and "\n-" + line in checked]
    assert "+exec %s -m gunicorn AgentLocator.main:app -k sync -w 1 -b 0.0.0.0:${PORT}" % PYTHON in checked

    # auto: supervisord runs the app now, so it stays the runner.
    out = stabilize(tmp_path, host.vars(), ["--diff", "-v"])

    assert recap(out)["failed"] == 0
    stable_200(host.port)
    status = subprocess.run(supervisord["ctl"] + ["status", "agentlocator"], stdout=subprocess.PIPE, text=True,
                            check=False).stdout
    master = int(re.search(r"RUNNING\s+pid (\d+)", status).group(1))
    assert serves(master, host.port)
    assert psutil.Process(master).parent().pid == supervisord["pid"]
    program = (supervisord["conf_dir"] / "agentlocator.conf").read_text()
    # The takeover keeps what the program's environment gave the app - in an owner-only env file on the host,
    # so the token is in no output, diff or rendered program - and PORT is stabilize's.
    assert 'environment=PORT="%d"\n' % host.port in program and TOKEN not in program
    carried = host.service_dir / "carried.env"
    assert carried.stat().st_mode & 0o777 == 0o600
    environ = psutil.Process(master).environ()
    assert environ["SPEECH_LANGUAGE"] == "en-US" and environ["TWILIO_AUTH_TOKEN"] == TOKEN
    assert TOKEN not in checked and TOKEN not in out
    assert "TWILIO_AUTH_TOKEN=<value kept on the host>" in out
    assert "-b 0.0.0.0:${PORT}" in (host.service_dir / "run.sh").read_text()
    host.assert_strays_gone()
    host.assert_decoys_alive()
    report = stabilize_report(tmp_path)
    assert report["service"]["manager"] == "supervisord" and report["result"] == "stabilized"
    assert any(OLD_LOG_LINE in t for t in archived_texts(host.service_dir / "log-archive"))

    again = stabilize(tmp_path, host.vars())
    assert_idempotent(again)
    status = subprocess.run(supervisord["ctl"] + ["status", "agentlocator"], stdout=subprocess.PIPE, text=True,
                            check=False).stdout
    assert "pid %d," % master in status
    stable_200(host.port, 1)
    host.assert_decoys_alive()


def test_a_run_that_fails_verify_rolls_back_to_the_program_it_found(host, tmp_path, supervisord):
    """No worse than it was found: a supervisord program that serves (slow /healthz, --timeout 30); stabilize with
    doctor_timeout=1 kills every /healthz request's worker, fails verify, and puts the program back."""
    def slow(text):
        return text.replace('    def healthz():\n', '    def healthz():\n'
                            '        import time\n        time.sleep(float(os.environ.get("HEALTHZ_DELAY", "0")))\n')
    host.app_dir = make_app(tmp_path / "slow", edit=slow)
    assert "HEALTHZ_DELAY" in (host.app_dir / "AgentLocator" / "main.py").read_text()
    program_file = supervisord["conf_dir"] / "agentlocator.conf"
    program_file.write_text(
        "[program:agentlocator]\ncommand=%s -m gunicorn AgentLocator.main:app -b 0.0.0.0:%d --timeout 30 --error-logfile %s\n"
        "directory=%s\nenvironment=PORT=\"%d\",HEALTHZ_DELAY=\"2.2\"\nautorestart=true\nstopasgroup=true\n" % (
            PYTHON, host.port, host.log, host.app_dir, host.port))
    program_before = program_file.read_text()
    subprocess.run(supervisord["ctl"] + ["update"], stdout=subprocess.DEVNULL, check=True)
    wait_for(lambda: healthz(host.port) == 200, 20, "the program's first 200")

    done = run_playbook("stabilize.yml", tmp_path, host.vars(doctor_timeout=1, doctor_verify_timeout=8), check=False)

    assert done.returncode != 0 and recap(done.stdout)["failed"] == 1
    report = stabilize_report(tmp_path)
    assert report["result"] == "rolled_back", report["summary"]
    # Why it failed (the worker killed mid-request), where, and that the old program serves again.
    assert "SystemExit" in report["summary"] and "(at: Await /healthz 200, then watch it stay up" in report["summary"]
    assert "runs again on its old files" in report["summary"]
    assert program_file.read_text() == program_before
    assert report["rollback"]["restored"] == [str(program_file)]
    assert not (host.service_dir / "run.sh").exists()
    status = subprocess.run(supervisord["ctl"] + ["status", "agentlocator"], stdout=subprocess.PIPE, text=True,
                            check=False).stdout
    master = int(re.search(r"RUNNING\s+pid (\d+)", status).group(1))
    assert "--timeout 30" in " ".join(psutil.Process(master).cmdline())
    assert serves(master, host.port) and healthz(host.port) == 200


def test_a_run_that_fails_verify_on_a_host_where_nothing_ran_leaves_nothing_running(host, tmp_path):
    """Rollback when the service did not run before: the files this run created are removed and what it started
    is stopped - the host is as it was found, and the report says why."""
    def slow(text):
        return text.replace('    def healthz():\n', '    def healthz():\n'
                            '        import time\n        time.sleep(float(os.environ.get("HEALTHZ_DELAY", "0")))\n')
    host.app_dir = make_app(tmp_path / "slow", edit=slow)
    host.env_file.write_text("PORT=%d\nHEALTHZ_DELAY=2.2\n" % host.port)

    done = run_playbook("stabilize.yml", tmp_path, host.vars(doctor_service_manager="standalone", doctor_timeout=1,
                                                             doctor_verify_timeout=8), check=False)

    assert done.returncode != 0
    report = stabilize_report(tmp_path)
    assert report["result"] == "rolled_back" and "is stopped, as it was found" in report["summary"], report["summary"]
    assert sorted(report["rollback"]["removed"]) == sorted([str(host.service_dir / "run.sh"), str(host.service_dir / "runner.env")])
    assert not (host.service_dir / "run.sh").exists() and not (host.service_dir / "runner.env").exists()
    assert app_pids(host.app_dir) == set() and listening_pid(host.port) is None
    assert host.env_file.read_text() == "PORT=%d\nHEALTHZ_DELAY=2.2\n" % host.port


# --- systemd: rendered and verified, not started (systemd is not PID 1 here) -----------------------------
def role_playbook(tmp_path, role, role_vars):
    playbook = tmp_path / "role.yml"
    playbook.write_text(json.dumps([{
        "name": "Run one role", "hosts": "target", "gather_facts": False,
        "tasks": [{"name": "Include it", "ansible.builtin.include_role": {"name": "sre.gunicorn_doctor." + role},
                   "vars": role_vars}],
    }]))
    inventory = tmp_path / "role-inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"target": {
        "ansible_connection": "local", "ansible_python_interpreter": PYTHON}}}}))
    return [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)]


def test_systemd_unit_is_rendered_and_verified(tmp_path):
    app_dir = make_app(tmp_path)
    units = tmp_path / "units"
    units.mkdir()
    role_vars = {
        "gunicorn_service_app": "AgentLocator.main:app", "gunicorn_service_chdir": str(app_dir),
        "gunicorn_service_python": PYTHON, "gunicorn_service_name": "agentlocator",
        "gunicorn_service_dir": str(tmp_path / "svc"), "gunicorn_service_manager": "systemd",
        "gunicorn_service_systemd_unit_dir": str(units), "gunicorn_service_start": False,
        "gunicorn_service_env_file": str(tmp_path / "service.env"),
        "gunicorn_service_environment": {"PORT": "8123", "EVENTLET_HUB": "selects", "EVENTLET_NO_GREENDNS": "yes"},
        "gunicorn_service_worker_class": "eventlet",
    }
    done = subprocess.run(role_playbook(tmp_path, "gunicorn_service", role_vars) + ["--diff"], cwd=ROOT, env=ansible_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-4000:]
    unit = units / "agentlocator.service"
    text = unit.read_text()
    assert "ExecStart=%s -m gunicorn AgentLocator.main:app -k eventlet -w 1 -b 0.0.0.0:${PORT} --timeout 120 " \
           "--keep-alive 75" % PYTHON in text
    assert 'Environment="PORT=8123"' in text and 'Environment="EVENTLET_HUB=selects"' in text
    assert "EnvironmentFile=-%s" % (tmp_path / "service.env") in text
    assert "select\"" not in text
    verified = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, check=False)
    assert verified.returncode == 0, verified.stdout
    assert "+ExecStart=" in done.stdout  # --diff shows the unit

    # A unit systemd would reject is never written: systemd-analyze's reason ends the run.
    bad = dict(role_vars, gunicorn_service_python="/nonexistent/python3", gunicorn_service_name="broken")
    done = subprocess.run(role_playbook(tmp_path, "gunicorn_service", bad), cwd=ROOT, env=ansible_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "is not executable" in done.stdout
    assert not (units / "broken.service").exists()


def test_systemd_takeover_keeps_the_units_variables_and_env_files_without_showing_them(tmp_path):
    """An existing unit of the app: its Environment= values move to the owner-only carried env file (never into the
    output or the diff), its EnvironmentFile= stays, and a second run changes nothing."""
    app_dir = make_app(tmp_path)
    units = tmp_path / "units"
    units.mkdir()
    defaults = tmp_path / "default-agentlocator"
    defaults.write_text("SPEECH_LANGUAGE=en-US\n")
    (units / "agentlocator.service").write_text(
        "[Unit]\nDescription=voice\n[Service]\nWorkingDirectory=%s\nEnvironment=\"PORT=5000\" \"TWILIO_AUTH_TOKEN=%s\"\n"
        "EnvironmentFile=-%s\nExecStart=%s -m gunicorn AgentLocator.main:app -b 0.0.0.0:5000\n" % (
            app_dir, TOKEN, defaults, PYTHON))
    role_vars = {
        "gunicorn_service_app": "AgentLocator.main:app", "gunicorn_service_chdir": str(app_dir),
        "gunicorn_service_python": PYTHON, "gunicorn_service_name": "agentlocator",
        "gunicorn_service_dir": str(tmp_path / "svc"), "gunicorn_service_manager": "systemd",
        "gunicorn_service_systemd_unit_dir": str(units), "gunicorn_service_start": False,
        "gunicorn_service_environment": {"PORT": "8123"},
    }
    argv = role_playbook(tmp_path, "gunicorn_service", role_vars) + ["--diff", "-v"]
    done = subprocess.run(argv, cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-4000:]
    assert TOKEN not in done.stdout and "TWILIO_AUTH_TOKEN=<value kept on the host>" in done.stdout
    text = (units / "agentlocator.service").read_text()
    carried = tmp_path / "svc" / "carried.env"
    assert TOKEN not in text and 'Environment="PORT=8123"' in text
    assert [line for line in text.splitlines() if line.startswith("EnvironmentFile=")] == [
        "EnvironmentFile=-%s" % carried, "EnvironmentFile=-%s" % defaults, "EnvironmentFile=-%s" % (tmp_path / "svc" / "runner.env")]
    assert carried.read_text() == 'TWILIO_AUTH_TOKEN="%s"\n' % TOKEN and carried.stat().st_mode & 0o777 == 0o600
    # The old unit (it held the token) is kept owner-only in the service directory, not beside the unit.
    assert [p.name for p in units.iterdir()] == ["agentlocator.service"]
    backups = list((tmp_path / "svc" / "backup").iterdir())
    assert len(backups) == 1 and TOKEN in backups[0].read_text() and backups[0].stat().st_mode & 0o777 == 0o600
    # What systemd would hand the service: PORT from the unit, the token and the defaults from the env files.
    verified = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / "agentlocator.service")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert verified.returncode == 0, verified.stdout

    again = subprocess.run(role_playbook(tmp_path, "gunicorn_service", role_vars), cwd=ROOT, env=ansible_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
    assert again.returncode == 0 and re.search(r"changed=0\s", again.stdout), again.stdout[-3000:]


def test_systemd_check_mode_diff_shows_the_unit(host, tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    host.wrong_port_master()
    out = stabilize(tmp_path, host.vars(doctor_service_manager="systemd", doctor_systemd_unit_dir=str(units)),
                    ["--check", "--diff"])
    assert recap(out)["failed"] == 0
    assert "+ExecStart=%s -m gunicorn AgentLocator.main:app -k sync -w 1 -b 0.0.0.0:${PORT}" % PYTHON in out
    assert list(units.iterdir()) == []
    host.assert_decoys_alive()
