"""diagnose.yml on services that restart, time out, get killed, or share the host with strays."""

import os
import re
import signal
import subprocess
import threading
import time
import urllib.request

import psutil

from doctor_run import PYTHON, cause, diagnose, layer, make_app
from gunicorn_service import free_port, start_restart_loop
from test_diagnose_server_layers import base_vars, healthy_service
from test_stabilize import healthz, stop_tree, wait_for


def test_check_mode_gives_the_same_report(services, tmp_path, port):
    service = healthy_service(services, tmp_path, port)
    report, out = diagnose(tmp_path, base_vars(service, tmp_path), extra_args=["--check"])
    assert report["verdict"] == "healthy"
    assert "changed=0" in out


def test_master_sigtermed_during_the_window_is_flapping(services, tmp_path, port):
    service = healthy_service(services, tmp_path, port)
    # What a platform does when its health check looks elsewhere: SIGTERM after a few seconds.
    killer = threading.Timer(2.5, os.kill, (service.pid, signal.SIGTERM))
    killer.start()
    try:
        report = diagnose(tmp_path, base_vars(service, tmp_path, doctor_stability_window=10))[0]
    finally:
        killer.cancel()
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


def test_young_healthy_service_is_healthy_after_its_window(services, tmp_path, port):
    service = healthy_service(services, tmp_path, port)
    started = time.time()
    # A window longer than ansible-playbook's own start on a loaded machine: the service is still young at the probe.
    report = diagnose(tmp_path, base_vars(service, tmp_path, doctor_stability_window=25, doctor_voice_checks=False))[0]
    assert report["verdict"] == "healthy", report["causes"]
    watched = check(report, "process", "masters through the window")
    assert watched["status"] == "pass", watched
    # It was watched until it was 25 s old, and not longer.
    assert time.time() - started >= 24
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
