"""Integration tests: real gunicorn services, real faults, the real playbooks."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from gunicorn_service import GunicornService, free_port  # noqa: E402
from doctor_run import PYTHON  # noqa: E402


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
