"""diagnose.yml against real gunicorn services with real faults injected; one test per cause."""

import hashlib
import os
import subprocess
import time

import psutil
import pytest

from doctor_run import PYTHON, cause, cause_ids, diagnose, layer, make_app, run_playbook
from gunicorn_service import free_port
from test_stabilize import healthz, stop_tree, wait_for


def healthy_service(services, tmp_path, port, **kwargs):
    app_dir = kwargs.pop("app_dir", None) or make_app(tmp_path)
    env = dict({"PORT": str(port)}, **kwargs.pop("env", {}))
    return services(app_dir, tmp_path / "gunicorn.log", bind=kwargs.pop("bind", "0.0.0.0:%d" % port),
                    env=env, **kwargs)


def base_vars(service_or_dir, tmp_path, **extra):
    app_dir = getattr(service_or_dir, "app_dir", service_or_dir)
    return dict({"doctor_chdir": str(app_dir), "doctor_log_file": str(tmp_path / "gunicorn.log")}, **extra)


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


def gunicorn_until_exit(app_dir, log, args):
    """Run a gunicorn that is expected to give up by itself; its output goes to `log`. -> exit code."""
    with open(log, "w") as out:
        done = subprocess.run([PYTHON, "-m", "gunicorn", "AgentLocator.main:app", "--no-control-socket"] + args,
                              cwd=app_dir, stdout=out, stderr=subprocess.STDOUT, timeout=60, check=False)
    return done.returncode


def test_healthy_sync_service(services, tmp_path, port):
    service = healthy_service(services, tmp_path, port)
    procs_before = sorted(p.pid for p in [psutil.Process(service.pid)] + psutil.Process(service.pid).children())
    files_before = tree_digest(service.app_dir)

    report, out = diagnose(tmp_path, base_vars(service, tmp_path))

    assert report["verdict"] == "healthy", report["causes"]
    assert report["failed_layer"] is None
    assert cause_ids(report) == []
    assert [l["status"] for l in report["layers"][:6]] == ["pass"] * 6
    # A sync service: eventlet does not apply; no public URL: nothing to probe from outside.
    assert [layer(report, name)["status"] for name in ("eventlet", "voice", "external")] == ["skip", "pass", "skip"]
    assert report["port"] == port
    assert "target: HEALTHY" in out
    assert "changed=0" in out
    # Read-only: the same processes, the same files.
    procs_after = sorted(p.pid for p in [psutil.Process(service.pid)] + psutil.Process(service.pid).children())
    assert procs_after == procs_before
    assert tree_digest(service.app_dir) == files_before


def test_port_unset_falls_back_to_8000_with_a_warning(tmp_path):
    app_dir = make_app(tmp_path)
    (tmp_path / "gunicorn.log").write_text("")
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path))[0]
    found = cause(report, "port_unset")
    assert found["severity"] == "warn"
    assert report["port"] == 8000 and report["port_source"] == "default"
    assert layer(report, "port")["status"] == "warn"


def test_port_unset_under_supervisord_says_to_set_it_in_the_programs_environment(tmp_path, supervisord):
    """A supervisord program runs the app with no PORT anywhere and no doctor_env_file: the remedy names the place
    this service's runner takes PORT from (the program's environment=), not a generic list."""
    app_dir = make_app(tmp_path)
    bind = "127.0.0.1:%d" % free_port()
    (supervisord["conf_dir"] / "agentlocator.conf").write_text(
        "[program:agentlocator]\ncommand=%s -m gunicorn AgentLocator.main:app -b %s --error-logfile %s\n"
        "directory=%s\nautorestart=true\nstopasgroup=true\n" % (PYTHON, bind, tmp_path / "gunicorn.log", app_dir))
    subprocess.run(supervisord["ctl"] + ["update"], stdout=subprocess.DEVNULL, check=True)
    wait_for(lambda: healthz(int(bind.rsplit(":", 1)[1])) == 200, 30, "the supervisord program")
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path))[0]

    found = cause(report, "port_unset")
    assert report["port_source"] == "default"
    assert "Set PORT to the port the platform routes to in environment= of [program:agentlocator] " \
        "(then supervisorctl update and restart)" in found["remedy"], found["remedy"]


def test_empty_port_in_env_file_is_invalid(services, tmp_path, port):
    app_dir = make_app(tmp_path)
    env_file = tmp_path / "service.env"
    env_file.write_text("PORT=\nPUBLIC_BASE_URL=https://voice.example.com\n")
    # The runbook's command with an empty $PORT: gunicorn refuses it and exits.
    log = tmp_path / "gunicorn.log"
    gunicorn_until_exit(app_dir, log, ["-b", "0.0.0.0:"])
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_env_file=str(env_file)))[0]
    assert report["failed_layer"] == "port"
    found = cause(report, "port_invalid")
    assert any(str(env_file) in e for e in found["evidence"])
    assert any("is not a valid port number" in e for e in found["evidence"])
    assert report["verdict"] == "down"


def test_wrong_port(services, tmp_path, port):
    other = port + 1 if port < 65000 else port - 1
    service = healthy_service(services, tmp_path, port, bind="0.0.0.0:%d" % other)
    report = diagnose(tmp_path, base_vars(service, tmp_path))[0]
    assert report["failed_layer"] == "listen"
    found = cause(report, "wrong_port")
    assert "nothing of the app listens on %d" % port in found["evidence"][0]
    assert "0.0.0.0:%d" % other in found["evidence"][0]
    assert "-b 0.0.0.0:$PORT" in found["remedy"]
    assert report["verdict"] == "down"


def test_a_settled_app_on_the_wrong_port_is_proven_by_its_own_answer_not_by_booting_it_again(services, tmp_path, port):
    """Older than the window and bound elsewhere: one GET of the health path on the port the app's master does listen
    on proves it boots and serves. The dry import and the spare-port boot (a second or more of CPU each, at every
    such host of a fleet audit) are not run, and the wrong_port cause shows that answer."""
    other = port + 1 if port < 65000 else port - 1
    service = healthy_service(services, tmp_path, port, bind="0.0.0.0:%d" % other)
    wait_for(lambda: time.time() - psutil.Process(service.pid).create_time() > 1.5, 30, "the service to settle")
    report = diagnose(tmp_path, base_vars(service, tmp_path, doctor_stability_window=1))[0]
    assert report["verdict"] == "down" and report["failed_layer"] == "listen"
    assert "GET http://127.0.0.1:%d/healthz -> 200 in" % other in cause(report, "wrong_port")["evidence"][1]
    checks = dict((c["name"], c) for c in layer(report, "boot")["checks"])
    for name in ("dry import", "preload boot"):
        assert checks[name]["status"] == "skip", checks[name]
        assert "answers GET http://127.0.0.1:%d/healthz with a 200" % other in checks[name]["detail"]
    assert "dry_import" not in report["timings"] and "preload_boot" not in report["timings"]


def test_loopback_only_bind(services, tmp_path, port):
    service = healthy_service(services, tmp_path, port, bind="127.0.0.1:%d" % port)
    report = diagnose(tmp_path, base_vars(service, tmp_path))[0]
    assert report["failed_layer"] == "listen"
    assert "bind_loopback_only" in cause_ids(report, "fail")
    # /healthz answers on loopback: the contract's verdict is degraded, not down.
    assert report["verdict"] == "degraded"


def test_nothing_listening(tmp_path, port):
    app_dir = make_app(tmp_path)
    (tmp_path / "gunicorn.log").write_text("")
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_port=port))[0]
    assert report["verdict"] == "down"
    assert report["failed_layer"] == "listen"
    found = cause(report, "not_listening")
    assert "nothing of the app listens on %d" % port in found["evidence"][0]
    # The app itself boots: the spare-port boot says so, so the boot layer passes.
    boot = {c["name"]: c for c in layer(report, "boot")["checks"]}
    assert boot["preload boot"]["status"] == "pass"
    assert app_processes(app_dir) == [], "the spare-port boot was not stopped"


def app_processes(app_dir):
    """Processes running in the app directory (what a spare-port boot would leave behind)."""
    found = []
    for proc in psutil.process_iter(["pid", "cwd", "status"]):
        if proc.info["cwd"] == str(app_dir) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc.info["pid"])
    return found


def test_two_masters(services, tmp_path, port):
    service = healthy_service(services, tmp_path, port)
    other_port = port + 2 if port < 65000 else port - 2
    services(service.app_dir, tmp_path / "second.log", bind="0.0.0.0:%d" % other_port, env={"PORT": str(port)})
    report = diagnose(tmp_path, base_vars(service, tmp_path))[0]
    found = cause(report, "multiple_runners")
    assert found["severity"] == "fail"
    assert report["failed_layer"] == "process"
    assert len(found["evidence"]) == 2


def test_loop_that_sigterms_the_master(tmp_path, port):
    app_dir = make_app(tmp_path)
    log = tmp_path / "gunicorn.log"
    # A second runner restarting the app every 2 s: the runbook's cause 6.
    loop = subprocess.Popen(["bash", "-c", 'while true; do "$0" -m gunicorn AgentLocator.main:app -b 0.0.0.0:$1 '
                             '--no-control-socket --error-logfile "$2" & pid=$!; sleep 2; kill -TERM $pid; wait $pid; '
                             'done', PYTHON, str(port), str(log)], cwd=app_dir, env=dict(os.environ, PORT=str(port)),
                            start_new_session=True)
    try:
        deadline = time.time() + 30
        while log.read_text().count("Handling signal: term") < 2 if log.exists() else True:
            assert time.time() < deadline, "the loop never restarted the master"
            time.sleep(0.2)
        report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_port=port))[0]
    finally:
        stop_tree(loop.pid)
    found = cause(report, "periodic_sigterm")
    # First comes the window's own sight of a master replaced when a restart falls in it (the loop's 2 s phase
    # decides), else the log's SIGTERM lines; those are in the evidence either way.
    assert "Handling signal: term" in found["evidence"][0] or "a runner restarts it" in found["evidence"][0]
    assert any('x "Handling signal: term" in the last' in line for line in found["evidence"]), found["evidence"]
    assert report["failed_layer"] == "process"
    assert report["verdict"] in ("down", "degraded")


def without_healthz(text):
    return text.replace('@app.get("/healthz")', '@app.get("/status-page")')


def failing_healthz(text):
    return text.replace('@app.get("/healthz")\n    def healthz():\n',
                        '@app.get("/healthz")\n    def healthz():\n        raise RuntimeError("database unreachable")\n')


@pytest.mark.parametrize("edit, cause_id", [(without_healthz, "healthz_missing"), (failing_healthz, "healthz_error")])
def test_healthz_missing_and_error(services, tmp_path, port, edit, cause_id):
    app_dir = make_app(tmp_path, edit)
    services(app_dir, tmp_path / "gunicorn.log", bind="0.0.0.0:%d" % port, env={"PORT": str(port)},
             health_path=None)
    services_ready_log(tmp_path / "gunicorn.log")
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path))[0]
    assert report["failed_layer"] == "healthz"
    assert cause_id in cause_ids(report, "fail")
    assert report["verdict"] == "down"


def services_ready_log(log, needle="Booting worker", timeout=20):
    deadline = time.time() + timeout
    while not (log.exists() and needle in log.read_text()):
        assert time.time() < deadline, "gunicorn never logged %r" % needle
        time.sleep(0.05)


def import_error(text):
    return text.replace("import os\n", "import os\nimport speech_client_that_is_not_installed  # noqa\n", 1)


def test_import_error_with_preload(services, tmp_path, port):
    app_dir = make_app(tmp_path, import_error)
    log = tmp_path / "gunicorn.log"
    # --preload: the import error kills the master with a bare traceback.
    assert gunicorn_until_exit(app_dir, log, ["--preload", "-b", "0.0.0.0:%d" % port]) != 0
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_port=port))[0]
    assert report["verdict"] == "down"
    found = cause(report, "boot_exception")
    assert any("speech_client_that_is_not_installed" in e for e in found["evidence"])
    boot = {c["name"]: c for c in layer(report, "boot")["checks"]}
    assert boot["preload boot"]["status"] == "fail"
    assert app_processes(app_dir) == []


def unguarded_app_run(text):
    return text + '\napp.run(host="127.0.0.1", port=int(os.environ["DEV_PORT"]))\n'


def test_unguarded_app_run_at_import(services, tmp_path, port):
    from gunicorn_service import free_port
    app_dir = make_app(tmp_path, unguarded_app_run)
    env = {"PORT": str(port), "DEV_PORT": str(free_port())}
    services(app_dir, tmp_path / "gunicorn.log", bind="0.0.0.0:%d" % port, env=env, health_path=None)
    services_ready_log(tmp_path / "gunicorn.log", "Running on")
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_boot_timeout=10))[0]
    found = cause(report, "dev_server_at_import")
    assert any("AgentLocator/main.py" in e and "app.run" in e for e in found["evidence"])
    assert any("Running on" in e for e in found["evidence"])
    assert report["verdict"] == "down"


def slow_import(text):
    return text.replace("import os\n", "import os\nimport time\ntime.sleep(float(os.environ.get('SLOW_IMPORT', '0')))\n", 1)


def test_import_slower_than_timeout(services, tmp_path, port):
    app_dir = make_app(tmp_path, slow_import)
    env = {"PORT": str(port), "SLOW_IMPORT": "5"}
    services(app_dir, tmp_path / "gunicorn.log", bind="0.0.0.0:%d" % port, env=env, health_path=None,
             extra_args=["--timeout", "2"])
    services_ready_log(tmp_path / "gunicorn.log")
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_boot_timeout=20))[0]
    found = cause(report, "slow_boot")
    assert found["severity"] == "fail"
    assert "timeout is 2 s" in found["evidence"][0]
    assert report["verdict"] == "down"


@pytest.fixture
def full_tmpfs(tmp_path):
    mount = tmp_path / "logs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        with open(mount / "filler", "wb") as f:
            try:
                f.write(b"\0" * (2 << 20))
            except OSError:
                pass  # ENOSPC: full, as wanted
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_tmpfs_under_the_log(services, tmp_path, port, full_tmpfs):
    log = full_tmpfs / "gunicorn.log"
    app_dir = make_app(tmp_path)
    services(app_dir, log, bind="0.0.0.0:%d" % port, env={"PORT": str(port)}, ready=False)
    wait_for(lambda: healthz(port) == 200, 20, "the service's first 200")
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_log_file=str(log)))[0]
    found = cause(report, "disk_full")
    assert found["severity"] == "fail"
    assert str(full_tmpfs) in found["evidence"][0]
    assert report["failed_layer"] == "system"


def test_open_files_limit_256(services, tmp_path, port):
    service = healthy_service(services, tmp_path, port, wrapper=["prlimit", "--nofile=256:256"])
    report = diagnose(tmp_path, base_vars(service, tmp_path))[0]
    found = cause(report, "fd_limit_low")
    assert "256" in found["evidence"][0] and str(service.pid) in found["evidence"][0]
    assert report["failed_layer"] == "system"
    assert report["verdict"] == "degraded"


def needs_env(text):
    return text.replace("import os\n", 'import os\nSPEECH_LANGUAGE = os.environ["SPEECH_LANGUAGE"]\n', 1)


def test_missing_env_var(services, tmp_path, port):
    app_dir = make_app(tmp_path, needs_env)
    log = tmp_path / "gunicorn.log"
    env_file = tmp_path / "service.env"
    env_file.write_text("PORT=%d\n" % port)
    # Without --preload the worker fails to boot and the master gives up.
    gunicorn_until_exit(app_dir, log, ["-b", "0.0.0.0:%d" % port])
    assert "Worker failed to boot" in log.read_text()
    report = diagnose(tmp_path, base_vars(app_dir, tmp_path, doctor_env_file=str(env_file)))[0]
    found = cause(report, "missing_env")
    assert any("SPEECH_LANGUAGE" in e for e in found["evidence"])
    assert "SPEECH_LANGUAGE" in found["remedy"]
    assert report["failed_layer"] == "listen"  # nothing runs; the boot layer says why


@pytest.mark.parametrize("variable, value, words", [
    ("doctor_port", "abc", "doctor_port='abc' is not a port"),
    ("doctor_port", "70000", "doctor_port='70000' is not a port"),
    ("doctor_app", "nonexistent:app", "doctor_app='nonexistent:app': no module 'nonexistent'"),
    ("doctor_chdir", "/nonexistent/app", "doctor_chdir='/nonexistent/app' is not a directory"),
    ("doctor_python", "/nonexistent/python3", "doctor_python='/nonexistent/python3' is not an executable"),
    ("doctor_log_file", "DIR", "is a directory"),
])
def test_bad_input_gives_one_line_error(tmp_path, variable, value, words):
    app_dir = make_app(tmp_path)
    if value == "DIR":
        value = str(tmp_path)
    host_vars = {"doctor_chdir": str(app_dir), "doctor_port": 8000, variable: value}
    done = run_playbook("diagnose.yml", tmp_path, host_vars, check=False)
    assert done.returncode != 0
    assert words in done.stdout
    assert "Traceback" not in done.stdout
    failed = [l for l in done.stdout.splitlines() if l.startswith("fatal:")]
    assert len(failed) == 1
