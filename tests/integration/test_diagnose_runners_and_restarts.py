"""diagnose.yml on services that restart, time out, get killed, or share the host with strays."""

import os
import re
import resource
import signal
import subprocess
import threading
import time
import urllib.request

import psutil

from doctor_run import PYTHON, ROOT, ansible_env, cause, diagnose, layer, make_app
from gunicorn_service import free_port, start_restart_loop
from test_diagnose_server_layers import base_vars, healthy_service
from test_stabilize import healthz, listening_pid, role_playbook, stop_tree, wait_for


def test_check_mode_gives_the_same_report(services, tmp_path, port):
    service = healthy_service(services, tmp_path, port)
    report, out = diagnose(tmp_path, base_vars(service, tmp_path), extra_args=["--check"])
    assert report["verdict"] == "healthy"
    assert "changed=0" in out


def sigterm_after_first_sample(service, access_log, stop):
    """What a platform does when its health check looks elsewhere: SIGTERM the master - here as soon as the doctor's
    first GET (the stability window's first sample, its User-Agent in the access log) was answered."""
    while not stop.wait(0.05):
        if "sre.gunicorn_doctor" in access_log.read_text(errors="replace"):
            if service.proc.poll() is None:   # our own child, not reaped: its PID is still its own
                os.kill(service.pid, signal.SIGTERM)
            return


def test_master_sigtermed_during_the_window_is_flapping(services, tmp_path, port):
    access_log = tmp_path / "access.log"
    service = healthy_service(services, tmp_path, port, extra_args=["--access-logfile", str(access_log)])
    stop = threading.Event()
    killer = threading.Thread(target=sigterm_after_first_sample, args=(service, access_log, stop), daemon=True)
    killer.start()
    try:   # a long window: it ends on the evidence, whatever ansible-playbook's start cost on a loaded machine
        report = diagnose(tmp_path, base_vars(service, tmp_path, doctor_stability_window=30))[0]
    finally:
        stop.set()
        killer.join()
    found = cause(report, "healthz_flapping")
    assert "answered 200, then" in found["evidence"][0]
    assert report["verdict"] == "down"
    assert report["failed_layer"] == "healthz"


def slow_route(text):
    return text + '\n\n@app.get("/slow")\ndef slow():\n    import time\n    time.sleep(30)\n    return "late"\n'


def test_worker_timeout_in_the_log(services, tmp_path, port):
    app_dir = make_app(tmp_path, slow_route)
    service = services(app_dir, tmp_path / "gunicorn.log", bind="0.0.0.0:%d" % port, env={"PORT": str(port)},
                       extra_args=["--timeout", "2"])
    try:
        urllib.request.urlopen("http://127.0.0.1:%d/slow" % port, timeout=10)
    except OSError:
        pass  # the worker is killed mid-request: that is the fault
    service.wait_for_log("Booting worker", timeout=10)
    deadline = time.time() + 10
    while service.log_text().count("Booting worker") < 2:
        assert time.time() < deadline, "no new worker after the timeout"
        time.sleep(0.1)
    report = diagnose(tmp_path, base_vars(service, tmp_path))[0]
    found = cause(report, "worker_timeout")
    assert any("WORKER TIMEOUT" in e for e in found["evidence"])
    assert report["failed_layer"] == "boot"


def test_worker_killed_by_sigkill_reads_as_oom(services, tmp_path, port):
    service = healthy_service(services, tmp_path, port)
    worker = psutil.Process(service.pid).children()[0]
    worker.kill()  # what the kernel OOM killer does to the biggest process
    service.wait_for_log("Perhaps out of memory?", timeout=10)
    service.wait_ready()
    report = diagnose(tmp_path, base_vars(service, tmp_path))[0]
    found = cause(report, "oom_killed")
    assert "SIGKILL" in found["evidence"][0] and str(worker.pid) in found["evidence"][0]
    assert report["verdict"] == "degraded"


def test_stray_dev_server_is_found_and_decoys_are_not(services, tmp_path, port):
    service = healthy_service(services, tmp_path, port)
    dev_port, decoy_port = free_port(), free_port()
    stray = subprocess.Popen([PYTHON, "-m", "AgentLocator.main"], cwd=service.app_dir,
                             env=dict(os.environ, PORT=str(dev_port)), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    decoy = subprocess.Popen([PYTHON, "-m", "http.server", "-b", "127.0.0.1", str(decoy_port)], cwd=service.app_dir,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while not any(c.laddr.port == dev_port for c in psutil.Process(stray.pid).net_connections()):
            assert time.time() < deadline, "the dev server never listened"
            time.sleep(0.1)
        report = diagnose(tmp_path, base_vars(service, tmp_path))[0]
    finally:
        stop_tree(stray.pid)
        stop_tree(decoy.pid)
    found = cause(report, "stray_processes")
    assert found["severity"] == "warn"
    assert any(str(stray.pid) in e for e in found["evidence"])
    assert not any(str(decoy.pid) in e for e in found["evidence"])
    assert report["verdict"] == "degraded"


def test_runner_is_supervisord(tmp_path, port, supervisord):
    app_dir = make_app(tmp_path)
    (supervisord["conf_dir"] / "agentlocator.conf").write_text("""[program:agentlocator]
command=%(python)s -m gunicorn AgentLocator.main:app -b 0.0.0.0:%(port)d --no-control-socket --error-logfile %(tmp)s/gunicorn.log
directory=%(app)s
environment=PORT="%(port)d"
autorestart=true
stopasgroup=true
""" % {"tmp": tmp_path, "python": PYTHON, "port": port, "app": app_dir})
    subprocess.run(supervisord["ctl"] + ["update"], stdout=subprocess.DEVNULL, check=True)
    wait_for(lambda: healthz(port) == 200, 30, "supervisord starting the app")
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path))[0]
    assert report["verdict"] == "healthy", report["causes"]
    process = next(l for l in report["layers"] if l["name"] == "process")
    assert any("started by supervisord" in c["detail"] for c in process["checks"])
    assert report["port_source"].startswith("/proc/") and report["port"] == port


def test_runner_is_nohup(tmp_path, port):
    app_dir = make_app(tmp_path)
    log = tmp_path / "gunicorn.log"
    pidfile = tmp_path / "gunicorn.pid"
    # A deploy script's `nohup gunicorn ... &`: the shell exits, the master is reparented.
    subprocess.run(["bash", "-c", 'nohup "$0" -m gunicorn AgentLocator.main:app -b 0.0.0.0:$1 --no-control-socket '
                    '--error-logfile "$2" --pid "$3" >/dev/null 2>&1 &', PYTHON, str(port), str(log), str(pidfile)],
                   cwd=app_dir, env=dict(os.environ, PORT=str(port)), check=True)
    deadline = time.time() + 20
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.time() < deadline, "the nohup'ed master never wrote its pidfile"
        time.sleep(0.05)
    master = int(pidfile.read_text())
    try:
        report = diagnose(tmp_path, base_vars(app_dir, tmp_path))[0]
    finally:
        stop_tree(master)
    process = next(l for l in report["layers"] if l["name"] == "process")
    # gunicorn replaces nohup's SIGHUP disposition; what is left to see is a master whose shell is gone.
    assert any("started by detached" in c["detail"] and "nohup" in c["detail"] for c in process["checks"]), \
        process["checks"]


# --- who restarts it: the restart history and the runner behind it (issue 14 point 2) ----------------------------
def terms_in(log):
    return log.read_text().count("Handling signal: term") if log.exists() else 0


def test_a_bash_loop_restarting_the_master_is_named_with_its_pid_in_the_timeline_and_remedy(tmp_path, port):
    app_dir = make_app(tmp_path)
    log = tmp_path / "gunicorn.log"
    loop = subprocess.Popen(["bash", "-c", 'while true; do "$0" -m gunicorn AgentLocator.main:app -b 0.0.0.0:$1 '
                             '--no-control-socket --error-logfile "$2" & pid=$!; sleep 2; kill -TERM $pid; wait $pid; '
                             'done', PYTHON, str(port), str(log)], cwd=app_dir, env=dict(os.environ, PORT=str(port)),
                            start_new_session=True)
    try:
        wait_for(lambda: terms_in(log) >= 3, 40, "three restarts by the loop")
        report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_port=port))[0]
    finally:
        stop_tree(loop.pid)
    history = report["restart_history"]
    assert history["pattern"].startswith("restarted "), history
    assert "x SIGTERM" in history["pattern"]
    assert history["restarts"] >= 2
    assert (history["runner"]["kind"], history["runner"]["pid"]) == ("shell_loop", loop.pid)
    assert any("SIGTERM after" in line and "shut down after" in line for line in history["timeline"])
    found = cause(report, "periodic_sigterm")
    assert "restarted by: bash loop pid %d" % loop.pid in "\n".join(found["evidence"])
    assert any(e.startswith("timeline: ") for e in found["evidence"])
    assert "bash loop pid %d" % loop.pid in found["remedy"] and "kill %d" % loop.pid in found["remedy"]
    summary = (tmp_path / "reports" / "target.md").read_text()
    assert "## Restart history" in summary and "Restarted by: bash loop pid %d" % loop.pid in summary


def master_pid_of(log, after):
    """The pid of the master that logged `Listening at` after the first `after` such lines."""
    pids = re.findall(r"Listening at: \S+ \((\d+)\)", log.read_text()) if log.exists() else []
    return int(pids[after]) if len(pids) > after else None


def test_supervisord_restarting_a_master_that_dies_is_named_with_autorestart_and_startsecs(tmp_path, port, supervisord):
    app_dir = make_app(tmp_path)
    log = tmp_path / "gunicorn.log"
    program = supervisord["conf_dir"] / "agentlocator.conf"
    program.write_text("[program:agentlocator]\ncommand=%s -m gunicorn AgentLocator.main:app -b 0.0.0.0:%d "
                       "--no-control-socket --error-logfile %s\ndirectory=%s\nenvironment=PORT=\"%d\"\n"
                       "autorestart=true\nstartsecs=1\nstopasgroup=true\n" % (PYTHON, port, log, app_dir, port))
    subprocess.run(supervisord["ctl"] + ["update"], stdout=subprocess.DEVNULL, check=True)
    # The master dies twice (what a platform's SIGTERM does); supervisord starts it again each time.
    for generation in range(3):
        master = wait_for(lambda: master_pid_of(log, generation), 30, "master %d listening" % (generation + 1))
        wait_for(lambda: healthz(port) == 200, 30, "master %d answering" % (generation + 1))
        if generation < 2:
            os.kill(master, signal.SIGTERM)
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path))[0]
    history = report["restart_history"]
    assert history["pattern"].startswith("restarted 2 times in ") and "2 x SIGTERM" in history["pattern"], history
    runner = history["runner"]
    assert (runner["kind"], runner["name"], runner["pid"]) == ("supervisord", "agentlocator", supervisord["pid"])
    assert runner["source"] == str(program)
    assert runner["settings"] == {"autorestart": "true", "startsecs": "1", "startretries": "3 (default)"}
    found = cause(report, "periodic_sigterm")
    assert "supervisord program agentlocator (%s): autorestart=true, startsecs=1" % program in found["remedy"]
    assert len([e for e in found["evidence"] if e.startswith("timeline: ")]) == 3


def abort_like_a_watchdog(app_dir, log, port, times):
    """Start the unit's command `times` times and SIGABRT each master after it listened, as systemd's watchdog does
    to a service that never sends WATCHDOG=1 (WatchdogSignal= defaults to SIGABRT); then start it once more."""
    argv = [PYTHON, "-m", "gunicorn", "AgentLocator.main:app", "-b", "0.0.0.0:%d" % port, "--no-control-socket",
            "--error-logfile", str(log)]

    def no_core():   # an abort leaves no core file
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for generation in range(times + 1):
        proc = subprocess.Popen(argv, cwd=app_dir, env=dict(os.environ, PORT=str(port)), preexec_fn=no_core,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: master_pid_of(log, generation) == proc.pid, 30, "master %d listening" % (generation + 1))
        wait_for(lambda: healthz(port) == 200, 30, "master %d answering" % (generation + 1))
        if generation == times:
            return proc
        proc.send_signal(signal.SIGABRT)
        proc.wait(timeout=10)
        # The orphaned worker holds the port until it notices its parent is gone ("Parent changed, shutting down").
        wait_for(lambda: listening_pid(port) is None, 30, "the orphaned worker of master %d exiting" % proc.pid)


def test_a_systemd_unit_with_a_watchdog_is_named_with_its_settings(tmp_path, port):
    app_dir = make_app(tmp_path)
    log = tmp_path / "gunicorn.log"
    units = tmp_path / "units"
    units.mkdir()
    role_vars = {
        "gunicorn_service_app": "AgentLocator.main:app", "gunicorn_service_chdir": str(app_dir),
        "gunicorn_service_python": PYTHON, "gunicorn_service_name": "agentlocator",
        "gunicorn_service_dir": str(tmp_path / "svc"), "gunicorn_service_manager": "systemd",
        "gunicorn_service_systemd_unit_dir": str(units), "gunicorn_service_start": False,
        "gunicorn_service_env_file": str(tmp_path / "service.env"), "gunicorn_service_environment": {"PORT": str(port)},
    }
    done = subprocess.run(role_playbook(tmp_path, "gunicorn_service", role_vars), cwd=ROOT, env=ansible_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-4000:]
    # What an operator adds to the rendered unit: a watchdog gunicorn never feeds, and Restart=always.
    (units / "agentlocator.service.d").mkdir()
    (units / "agentlocator.service.d" / "watchdog.conf").write_text("[Service]\nRestart=always\nWatchdogSec=5\n")
    master = abort_like_a_watchdog(app_dir, log, port, times=2)
    try:
        report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_systemd_unit_dir=str(units)))[0]
    finally:
        stop_tree(master.pid)
    history = report["restart_history"]
    assert history["pattern"].startswith("restarted 2 times in "), history
    assert sum("gone without a shutdown line" in line for line in history["timeline"]) == 2
    runner = history["runner"]
    assert (runner["kind"], runner["name"]) == ("systemd", "agentlocator.service")
    assert runner["source"] == str(units / "agentlocator.service")
    assert runner["settings"]["Restart"] == "always" and runner["settings"]["WatchdogSec"] == "5"
    found = cause(report, "periodic_sigterm")
    assert found["evidence"][0].startswith("2 masters of the last 10 min of %s ended: restarted 2 times" % log)
    assert ("systemd unit agentlocator.service (%s): WatchdogSec=5, Restart=always - gunicorn never sends WATCHDOG=1"
            % (units / "agentlocator.service")) in found["remedy"]
    assert "remove WatchdogSec=" in found["remedy"]


def check(report, layer_name, name):
    return next(c for c in layer(report, layer_name)["checks"] if c["name"] == name)


def test_restart_loop_that_keeps_healthz_green_is_caught_in_the_window(tmp_path, port):
    app_dir = make_app(tmp_path)
    log = tmp_path / "gunicorn.log"
    # A shell loop that starts a new master beside the old one every 8 s, then SIGTERMs the old: /healthz stays 200.
    loop = start_restart_loop(app_dir, port, log, PYTHON, period=8.0)
    try:
        # Right after one replacement: the next one falls inside the 15 s window.
        wait_for(lambda: log.exists() and "Shutting down: Master" in log.read_text(), 30, "the loop's first restart")
        report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_port=port, doctor_stability_window=15,
                                              doctor_voice_checks=False))[0]
    finally:
        stop_tree(loop.pid)
    found = cause(report, "periodic_sigterm")
    replaced = re.match(r"master (\d+) replaced by (\d+) at \+([\d.]+) s", found["evidence"][0])
    assert replaced, found["evidence"]
    old, new = int(replaced.group(1)), int(replaced.group(2))
    text = log.read_text()
    assert "[%d] [INFO] Listening at:" % old in text and "[%d] [INFO] Listening at:" % new in text
    assert "[%d] [INFO] Handling signal: term" % old in text
    # Caught inside the window, and the window ended with the evidence, not after its 15 s.
    assert float(replaced.group(3)) < 15
    assert report["timings"]["healthz"] < 14, report["timings"]
    assert check(report, "healthz", "stable 200")["status"] == "fail"
    assert report["failed_layer"] == "process"


def gunicorns_of(pid):
    """The gunicorn masters process `pid` runs now."""
    try:
        return [c.pid for c in psutil.Process(pid).children() if "gunicorn" in " ".join(c.cmdline())]
    except psutil.NoSuchProcess:
        return []


def two_masters_after_restarts(log, pid):
    """Two restarts done, and `pid` runs two masters: the next one, started after the last SIGTERM, beside the current
    (a SIGTERMed master that logged its shutdown may not have exited yet: it is not counted as one of the two)."""
    text = log.read_text() if log.exists() else ""
    terms = text.count("Handling signal: term")
    return terms >= 2 and text.count("Starting gunicorn") == terms + 2 and len(gunicorns_of(pid)) == 2


def test_one_loop_overlapping_its_own_restart_is_periodic_sigterm_not_a_second_runner(tmp_path, port):
    app_dir = make_app(tmp_path)
    log = tmp_path / "gunicorn.log"
    # Each next master listens beside the old one (--reuse-port) for 7.5 s of every 10 before the loop SIGTERMs the
    # old: after two restarts the probe finds two masters, both the loop's.
    loop = start_restart_loop(app_dir, port, log, PYTHON, period=10.0, overlap=7.5)
    try:
        wait_for(lambda: two_masters_after_restarts(log, loop.pid), 60, "two restarts done, then two masters")
        report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_port=port, doctor_voice_checks=False))[0]
    finally:
        stop_tree(loop.pid)
    seen = [c["name"] for c in layer(report, "process")["checks"] if re.match(r"gunicorn master \d+$", c["name"])]
    assert len(seen) == 2, seen   # the probe saw the overlap
    ids = [c["id"] for c in report["causes"]]
    assert "periodic_sigterm" in ids and "multiple_runners" not in ids, ids
    one = check(report, "process", "one runner")
    assert one["status"] == "pass" and "all started by shell_loop pid %d, which restarts them" % loop.pid in one["detail"]
    assert one["detail"][len("note: "):] in cause(report, "periodic_sigterm")["evidence"]


def test_young_healthy_service_is_healthy_after_its_window(services, tmp_path, port):
    service = healthy_service(services, tmp_path, port)
    # The service's age counts from its master's start (its workers are younger), not from when it answered.
    started = psutil.Process(service.pid).create_time()
    # A window longer than ansible-playbook's own start on a loaded machine: the service is still young at the probe.
    report = diagnose(tmp_path, base_vars(service, tmp_path, doctor_stability_window=25, doctor_voice_checks=False))[0]
    assert report["verdict"] == "healthy", report["causes"]
    watched = check(report, "process", "masters through the window")
    assert watched["status"] == "pass", watched
    # It was watched until it was 25 s old, and not longer.
    assert time.time() - started >= 24.5
    assert report["timings"]["healthz"] <= 25, report["timings"]


def test_worker_timeout_ends_the_window_early(services, tmp_path, port):
    app_dir = make_app(tmp_path, slow_route)
    # Two sync workers: /healthz keeps answering from one while the other is stuck in /slow past --timeout 2.
    service = services(app_dir, tmp_path / "gunicorn.log", bind="0.0.0.0:%d" % port, env={"PORT": str(port)},
                       workers=2, extra_args=["--timeout", "2"])
    stop = threading.Event()

    def call_slow():
        while not stop.is_set():
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/slow" % port, timeout=10)
            except OSError:
                pass  # the worker is killed mid-request: that is the fault

    caller = threading.Thread(target=call_slow, daemon=True)
    caller.start()
    try:
        report = diagnose(tmp_path, base_vars(service, tmp_path, doctor_stability_window=40,
                                              doctor_voice_checks=False))[0]
    finally:
        stop.set()
    found = cause(report, "worker_timeout")
    assert any("WORKER TIMEOUT" in e for e in found["evidence"]), found
    # A 40 s window, ended by the first timed-out worker (2 s of --timeout, gunicorn's 1 s check, the re-boot).
    assert report["timings"]["healthz"] < 15, report["timings"]
    restarts = check(report, "process", "worker restarts")
    assert restarts["status"] == "warn" and "WORKER TIMEOUT" in restarts["detail"], restarts


def slow_import(text):
    return text.replace("import os\n", "import os\nimport time\ntime.sleep(float(os.environ.get('SLOW_IMPORT', '0')))\n", 1)


def test_a_worker_still_booting_past_its_timeout_is_a_slow_boot_at_once(services, tmp_path, port):
    """A settled slow boot: the service's only worker has been importing for longer than --timeout (gunicorn does not
    kill it), its listen backlog takes connections nobody answers. Its heartbeat says so at the window's first look:
    no 3 s wait for the first sample, no dry import run out to the timeout."""
    app_dir = make_app(tmp_path, slow_import)
    log = tmp_path / "gunicorn.log"
    service = services(app_dir, log, bind="0.0.0.0:%d" % port, env={"PORT": str(port), "SLOW_IMPORT": "60"},
                       extra_args=["--timeout", "2"], ready=False)
    wait_for(lambda: psutil.Process(service.pid).children(), 20, "the first worker")
    worker = psutil.Process(service.pid).children()[0]
    time.sleep(max(0.0, worker.create_time() + 3.0 - time.time()))   # booting for longer than its --timeout 2
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_port=port, doctor_voice_checks=False))[0]

    assert report["verdict"] == "down" and report["causes"][0]["id"] == "slow_boot", [c["id"] for c in report["causes"]]
    evidence = report["causes"][0]["evidence"][0]
    assert "worker %d of master %d has been booting for" % (worker.pid, service.pid) in evidence, evidence
    assert "the worker timeout is 2 s" in evidence
    stable = check(report, "healthz", "stable 200")["detail"]
    assert "not waited for further: every worker of the app is still booting" in stable, stable
    assert check(report, "boot", "dry import")["status"] == "skip"
    assert report["timings"]["total"] < 2, report["timings"]   # the dry import alone would take the 2 s timeout


def test_slow_boot_is_named_at_the_services_timeout(services, tmp_path, port):
    app_dir = make_app(tmp_path, slow_import)
    log = tmp_path / "gunicorn.log"
    services(app_dir, log, bind="0.0.0.0:%d" % port, env={"PORT": str(port), "SLOW_IMPORT": "40"},
             extra_args=["--timeout", "3"], ready=False)
    wait_for(lambda: log.exists() and "Booting worker" in log.read_text(), 20, "the first worker")
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_voice_checks=False))[0]
    # The import would take 40 s and doctor_boot_timeout allows 30: the service's own --timeout 3 decides.
    found = cause(report, "slow_boot")
    assert "the worker timeout is 3 s" in found["evidence"][0], found
    assert report["timings"]["dry_import"] < 10, report["timings"]
    assert "preload_boot" not in report["timings"]
    assert report["timings"]["total"] < 15, report["timings"]   # not 2 x doctor_boot_timeout
