"""probe_host reads the eventlet environments (and the hub crash they show) only for the layers that use them: the
eventlet layer, the stability window (healthz, and the boot, eventlet and voice layers that run it) and the boot
layer; a probe of the port or process layer alone (port_info, process_info) skips them. A real probe of an app with
no master running, its window one second long."""

import sys

import psutil
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import eventlet as eventlet_probe, host


@pytest.fixture
def params(tmp_path):
    (tmp_path / "AgentLocator").mkdir()
    (tmp_path / "AgentLocator" / "__init__.py").write_text("")
    (tmp_path / "AgentLocator" / "main.py").write_text("app = None\n")
    return {"app": "AgentLocator.main:app", "chdir": str(tmp_path), "python": sys.executable, "port": "1",
            "stability_window": 1, "boot_timeout": 5, "preload_boot": "never", "dry_import": False,
            "voice_checks": False}


@pytest.fixture
def reads(monkeypatch):
    """The contexts eventlet_probe.read_environments was called with (it still reads them)."""
    calls = []

    def read_environments(context):
        calls.append(context)
        return real(context)
    real = eventlet_probe.read_environments
    monkeypatch.setattr(eventlet_probe, "read_environments", read_environments)
    return calls


@pytest.mark.parametrize("layers", [["port"], ["process"], ["listen"], ["system"]])
def test_a_probe_of_a_layer_that_needs_no_eventlet_environment_does_not_read_them(params, reads, layers):
    facts = host.probe_host(psutil, params, layers)
    assert "eventlet_env" not in facts["timings"] and not reads
    assert set(layers) <= set(facts)


@pytest.mark.parametrize("layers", [None, ["healthz"]])
def test_a_full_probe_or_one_that_runs_the_window_reads_them_once(params, reads, layers):
    facts = host.probe_host(psutil, params, layers)
    assert "eventlet_env" in facts["timings"] and len(reads) == 1
    assert "healthz" in facts


def test_the_context_still_holds_them_when_they_are_not_read(params):
    _facts, context = host._first_facts(psutil, host.validate(params), {}, {"port"})
    assert context["eventlet_envs"] is None and context["hub_crash"] is None
    _facts, context = host._first_facts(psutil, host.validate(params), {}, set(host.TARGET_LAYERS))
    assert sorted(context["eventlet_envs"]) == ["masters", "restarters", "runners"] and context["hub_crash"] is None
