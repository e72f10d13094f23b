"""Integration tests: real gunicorn services, real faults, the real playbooks."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from gunicorn_service import GunicornService, free_port  # noqa: E402
from doctor_run import PYTHON  # noqa: E402
from test_stabilize import VENV_BIN, stop_tree, wait_for  # noqa: E402


@pytest.fixture
def services():
    """Start gunicorn services for a test; every one is stopped by its PID afterwards."""
    started = []

    def start(app_dir, log_path, ready=True, **kwargs):
        kwargs.setdefault("python", PYTHON)
        service = GunicornService(app_dir=app_dir, app_spec=kwargs.pop("app_spec", "AgentLocator.main:app"),
                                  log_path=log_path, **kwargs)
        started.append(service)
        service.start()
        if ready:
            service.wait_ready()
        return service

    yield start
    for service in reversed(started):
        service.stop(grace=5)


@pytest.fixture
def port():
    return free_port()


def start_supervisord(base):
    """A real supervisord from the venv, its config and programs in `base` -> (Popen, its dict). Its socket is in a
    short directory of its own (`sock_dir`, removed by stop_supervisord): a unix socket's path has at most 107
    characters, and a parallel test worker's tmp_path is longer."""
    (base / "conf.d").mkdir(parents=True)
    conf = base / "supervisord.conf"
    sock_dir = Path(tempfile.mkdtemp(prefix="gd-sv-"))
    conf.write_text("""[supervisord]
logfile=%(base)s/supervisord.log
pidfile=%(base)s/supervisord.pid
nodaemon=true

[unix_http_server]
file=%(sock_dir)s/supervisor.sock

[supervisorctl]
serverurl=unix://%(sock_dir)s/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[include]
files = conf.d/*.conf
""" % {"base": base, "sock_dir": sock_dir})
    proc = subprocess.Popen([str(VENV_BIN / "supervisord"), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ctl = [str(VENV_BIN / "supervisorctl"), "-c", str(conf)]
    try:
        wait_for(lambda: subprocess.run(ctl + ["pid"], stdout=subprocess.PIPE, check=False).stdout.strip().isdigit(),
                 20, "supervisord")
    except BaseException:
        stop_supervisord(proc, {"sock_dir": sock_dir})
        raise
    return proc, {"conf": conf, "conf_dir": base / "conf.d", "ctl": ctl, "pid": proc.pid, "sock_dir": sock_dir}


def stop_supervisord(proc, info):
    """Stop a supervisord of start_supervisord (and its programs) by PID; remove its socket's directory."""
    try:
        stop_tree(proc.pid, grace=15)
        proc.wait(timeout=10)
    finally:
        shutil.rmtree(str(info["sock_dir"]), ignore_errors=True)


@pytest.fixture
def supervisord(tmp_path):
    """A real supervisord from the venv, its config, socket and programs in tmp_path; stopped by PID."""
    proc, info = start_supervisord(tmp_path / "supervisor")
    try:
        yield info
    finally:
        stop_supervisord(proc, info)


@pytest.fixture
def supervisords(tmp_path):
    """Start more real supervisords, each in its own directory under tmp_path: start(name) -> dict; stopped by PID."""
    started = []

    def start(name):
        proc, info = start_supervisord(tmp_path / name)
        started.append((proc, info))
        return info

    yield start
    for proc, info in reversed(started):
        stop_supervisord(proc, info)
