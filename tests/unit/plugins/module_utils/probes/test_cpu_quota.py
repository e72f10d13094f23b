"""cpu_quota: which cpu.stat holds an app's CPU quota, and the share of its periods that ran out of it.
The real kernel counters under a real quota: tests/integration/test_diagnose_under_load.py."""

import os

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import cpu_quota
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import voice


def stat_file(root, *parts):
    path = os.path.join(str(root), *parts)
    os.makedirs(path)
    with open(os.path.join(path, "cpu.stat"), "w") as f:
        f.write("nr_periods 40\nnr_throttled 30\nthrottled_usec 900000\n")
    return os.path.join(path, "cpu.stat")


def test_cgroup_v2_the_unified_hierarchy(tmp_path):
    path = stat_file(tmp_path, "system.slice", "voice.service")
    assert cpu_quota.cgroup_stat_path("0::/system.slice/voice.service\n", str(tmp_path)) == path


def test_cgroup_v1_the_cpu_controller_wins_on_a_hybrid_host(tmp_path):
    path = stat_file(tmp_path, "cpu,cpuacct", "docker", "abc")
    text = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/docker/abc\n"
    assert cpu_quota.cgroup_stat_path(text, str(tmp_path)) == path


def test_cgroup_v1_mounted_as_cpu_alone(tmp_path):
    path = stat_file(tmp_path, "cpu", "limited")
    assert cpu_quota.cgroup_stat_path("2:cpu:/limited\n", str(tmp_path)) == path


@pytest.mark.parametrize("text", ["", "garbage\n", "4:cpu:/../../etc\n", "3:memory:/x\n"])
def test_no_cgroup_cpu_stat_is_named(tmp_path, text):
    assert cpu_quota.cgroup_stat_path(text, str(tmp_path)) is None


def test_a_process_gone_has_no_sample():
    assert cpu_quota.sample(None) is None
    assert cpu_quota.sample(2 ** 22 + 7) is None   # above pid_max's default: no such process


@pytest.mark.parametrize("before, after, share", [
    ({"path": "a", "periods": 10, "throttled": 2}, {"path": "a", "periods": 30, "throttled": 20}, 0.9),
    ({"path": "a", "periods": 10, "throttled": 2}, {"path": "a", "periods": 10, "throttled": 2}, None),   # no work
    ({"path": "a", "periods": 10, "throttled": 2}, {"path": "b", "periods": 30, "throttled": 2}, None),   # moved
    (None, {"path": "a", "periods": 30, "throttled": 2}, None),
])
def test_throttled_share(before, after, share):
    assert cpu_quota.throttled_share(before, after) == share


@pytest.mark.parametrize("throttled, scale", [(None, 1.0), (0.0, 1.0), (0.5, 2.0), (0.75, 4.0), (1.0, 8.0)])
def test_an_app_held_to_its_quota_gets_longer_bounds_on_an_idle_host(throttled, scale):
    found = voice.bounds_scale({"samples": [{"status": 200, "latency_ms": 3.0}]}, 0.2, 2, throttled=throttled)
    assert found["scale"] == scale
    assert ("CPU quota ran out in" in found["why"]) is (throttled is not None)
