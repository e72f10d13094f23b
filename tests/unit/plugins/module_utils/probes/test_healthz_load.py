"""A loaded host answers late whatever the app does: /healthz samples get longer (probes/cpu_load.py), an idle
host keeps `curl -m 3`'s bound. Real parts: an HTTP server on loopback that answers late, the host's /proc/loadavg."""

import time

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import cpu_load, healthz
from test_window import serving

LATE = 0.6   # the server's answer time: past the 0.25 s bound of an idle host, within 4 x that on a loaded one


@pytest.fixture
def late_server():
    def late_200():
        time.sleep(LATE)
        return 200
    with serving(late_200) as port:
        yield port


def test_a_late_answer_on_an_idle_host_is_a_timeout(late_server):
    facts = healthz.Sampler(late_server, "/healthz", 0, "old", timeout=0.25, settled="test",
                            load=lambda: (1.0, "run queue 0.3 on 2 CPU(s)")).run()
    assert facts["samples"][0]["status"] is None and "within 0.25" in facts["samples"][0]["error"]
    assert "slow_host" not in facts


def test_a_late_answer_on_a_loaded_host_is_waited_for_and_the_facts_say_why(late_server):
    facts = healthz.Sampler(late_server, "/healthz", 0, "old", timeout=0.25,
                            load=lambda: (4.0, "run queue 8.0 on 2 CPU(s)")).run()
    assert [s["status"] for s in facts["samples"]] == [200]
    assert facts["samples"][0]["latency_ms"] >= LATE * 1000
    assert facts["slow_host"] == {"timeout": 1.0, "why": "run queue 8.0 on 2 CPU(s)"}


def test_the_load_factor_grows_with_the_run_queue_per_cpu_within_its_cap():
    assert cpu_load.scale(1.5, 2) == (1.0, "run queue 1.5 on 2 CPU(s)")
    assert cpu_load.scale(9.0, 2) == (4.5, "run queue 9.0 on 2 CPU(s)")
    assert cpu_load.scale(40.0, 2)[0] == cpu_load.SCALE_MAX


def test_the_run_queue_is_read_from_this_host():
    with open("/proc/loadavg") as f:
        fields = f.read().split()
    found = cpu_load.run_queue()
    assert found >= float(fields[0]) - 2.0 and found >= 0.0   # the average may move between the two reads
    factor, why = cpu_load.scale()
    assert 1.0 <= factor <= cpu_load.SCALE_MAX and why.endswith("on %d CPU(s)" % cpu_load.cpus())
