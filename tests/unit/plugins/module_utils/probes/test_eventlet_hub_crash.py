"""eventlet_probe.hub_crash: the one test of "no eventlet master of the app can run on its EVENTLET_HUB", used by the
stability window (it ends at its first sample) and by the eventlet layer (no spare-port boot). A real bash loop with
the hub in its environment stands for the runner of a crash loop; the masters are facts as probe_host reads them."""

import os
import subprocess
import time

import psutil
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import eventlet as eventlet_probe, host

LOOP = {"kind": "shell_loop", "name": "bash", "command": "bash -c while true; do python -m gunicorn "
        "AgentLocator.main:app -k eventlet; sleep 1; done", "source": None, "settings": {}, "found": "its command"}


def master(pid, worker_class, hub):
    return {"pid": pid, "settings": {"worker_class": worker_class}}, {pid: {"EVENTLET_HUB": hub} if hub else {}}


def envs(masters=None, restarters=(), runners=()):
    return {"masters": masters or {}, "restarters": list(restarters), "runners": list(runners)}


@pytest.fixture
def loop():
    """A real keep-alive loop whose environment holds EVENTLET_HUB=no_such_hub, with -k eventlet in its command."""
    proc = subprocess.Popen(["bash", "-c", "while true; do sleep 1; done", "python", "-k", "eventlet"],
                            env=dict(os.environ, EVENTLET_HUB="no_such_hub"))
    deadline = time.time() + 5
    while psutil.Process(proc.pid).cmdline()[:1] != ["bash"] and time.time() < deadline:   # until it has exec'd
        time.sleep(0.01)
    yield proc
    proc.kill()
    proc.wait()


def test_a_running_eventlet_master_on_an_invalid_hub_cannot_run():
    found, env = master(41, "eventlet", "no_such_hub")
    text = eventlet_probe.hub_crash([found], envs(env))
    assert text.startswith("EVENTLET_HUB=no_such_hub in /proc/41/environ (running master 41, -k eventlet): "
                           "No module named 'eventlet.hubs.no_such_hub'"), text


def test_a_valid_hub_a_sync_master_or_no_hub_is_no_crash():
    for worker_class, hub in (("eventlet", "poll"), ("sync", "no_such_hub"), ("eventlet", None)):
        found, env = master(41, worker_class, hub)
        assert eventlet_probe.hub_crash([found], envs(env)) is None, (worker_class, hub)


def test_a_running_master_with_a_good_hub_outweighs_what_the_next_start_would_use():
    # The runner's config was changed after the master started: the service runs now; the next start is the
    # eventlet layer's finding, not a crash loop the window may skip.
    found, env = master(41, "eventlet", "poll")
    unit = {"source": "/etc/systemd/system/app.service", "kind": "systemd unit", "worker_class": "eventlet",
            "env": {"EVENTLET_HUB": "no_such_hub"}}
    assert eventlet_probe.hub_crash([found], envs(env, runners=[unit])) is None
    text = eventlet_probe.hub_crash([], envs(runners=[unit]))
    assert text.startswith("EVENTLET_HUB=no_such_hub in /etc/systemd/system/app.service (systemd unit): "), text
    assert eventlet_probe.hub_crash([], envs(runners=[dict(unit, worker_class="sync")])) is None


def test_with_no_master_alive_the_loop_that_restarts_it_says_which_hub_it_gets(loop):
    restarters = eventlet_probe.runner_processes(psutil, {"runners": [dict(LOOP, pid=loop.pid)]})
    text = eventlet_probe.hub_crash([], envs(restarters=restarters))
    assert text.startswith("EVENTLET_HUB=no_such_hub in /proc/%d/environ (bash pid %d, which restarts the master"
                           % (loop.pid, loop.pid)), text


def test_the_spare_port_boots_are_skipped_on_a_hub_crash():
    context = {"params": {"preload_boot": "auto"}, "stable": False}
    log = {"errors": []}
    skipped = eventlet_probe._spare_port_boot(context, [], log, {}, [], crash="EVENTLET_HUB=x in y: why")
    assert skipped["boot"] is None and skipped["boot_skipped"].startswith("EVENTLET_HUB=x in y: why - ")
    dry = {"ok": True, "healthz_status": 200}
    assert "fails on its hub (EVENTLET_HUB=x in y: why)" in host._hub_crash_skip({"hub_crash": "EVENTLET_HUB=x in y: why"}, dry)
    assert host._hub_crash_skip({"hub_crash": "EVENTLET_HUB=x in y: why"}, dict(dry, ok=False)) is None   # sync may tell
    assert host._hub_crash_skip({"hub_crash": None}, dry) is None
