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


class CountingPsutil(object):
    """The real psutil, counting the passes over the process table."""

    def __init__(self):
        self.passes = 0

    def process_iter(self, *args, **kwargs):
        self.passes += 1
        return psutil.process_iter(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(psutil, name)


def test_the_first_facts_read_the_process_table_once(params):
    """process.collect, the shell loops and the health checkers share one pass over /proc: on a host with hundreds of
    processes each pass costs the probe tens of milliseconds of CPU."""
    counting = CountingPsutil()
    facts, _context = host._first_facts(counting, host.validate(params), {}, {"process"})
    assert counting.passes == 1
    assert facts["process"]["masters"] == [] and facts["process"]["restarters"]["runners"] == []


def test_the_first_facts_read_each_unit_directory_once(params, monkeypatch, tmp_path):
    """The port, runner, restart and eventlet probes all look for the app's systemd units: each unit directory is
    listed and read once per probe run (four times before), and again by the next run (a unit may have changed)."""
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    (unit_dir / "agentlocator.service").write_text(
        "[Service]\nWorkingDirectory=%s\nEnvironment=PORT=8123\nExecStart=/usr/bin/gunicorn -b 0.0.0.0:8123 %s\n"
        "Restart=always\n" % (params["chdir"], params["app"]))
    from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import service_env
    real, listed = service_env.glob.glob, []

    def glob(pattern, *args, **kwargs):
        listed.append(pattern)
        return real(pattern, *args, **kwargs)
    monkeypatch.setattr(service_env.glob, "glob", glob)
    params = dict(params, systemd_unit_dir=str(unit_dir))
    standard = "/etc/systemd/system/*.service"
    host._first_facts(psutil, host.validate(params), {}, set(host.TARGET_LAYERS))
    assert listed.count(standard) == 1 and listed.count(str(unit_dir / "*.service")) == 1
    facts, _context = host._first_facts(psutil, host.validate(params), {}, set(host.TARGET_LAYERS))
    assert listed.count(standard) == 2
    runners = facts["process"]["restarters"]["runners"]
    assert [r["source"] for r in runners] == [str(unit_dir / "agentlocator.service")]
