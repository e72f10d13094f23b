"""system: the kernel's OOM kills, from dmesg only when /proc/vmstat counts any. A `dmesg` on PATH that writes
a real OOM-killer line stands in for a kernel that killed the app; an empty PATH for a host without dmesg."""

import os

import psutil

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import system

OOM = ("[ 812.331] Out of memory: Killed process 4251 (gunicorn) total-vm:912344kB, anon-rss:803112kB\n"
       "[ 812.402] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),task=python3,pid=4300,uid=33\n")


def dmesg_on_path(tmp_path, monkeypatch, counter):
    """A dmesg that prints OOM and counts its runs in `counter` (a file)."""
    script = tmp_path / "dmesg"
    # Only shell builtins: PATH holds nothing but this script.
    script.write_text("#!/bin/sh\necho run >> %s\n" % counter + "".join("echo '%s'\n" % line for line in OOM.splitlines()))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))


def test_kills_counted_are_read_from_dmesg(tmp_path, monkeypatch):
    dmesg_on_path(tmp_path, monkeypatch, tmp_path / "runs")
    events = system.oom_events(2)
    assert [(e["pid"], e["name"]) for e in events] == [(4251, "gunicorn"), (4300, "python3")]
    assert (tmp_path / "runs").read_text() == "run\n"


def test_no_kill_since_boot_runs_no_dmesg(tmp_path, monkeypatch):
    dmesg_on_path(tmp_path, monkeypatch, tmp_path / "runs")
    assert system.oom_events(0) == []
    assert not (tmp_path / "runs").exists()


def test_an_unknown_count_still_asks_dmesg_and_a_missing_dmesg_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))   # no dmesg here
    assert system.oom_events(None) is None
    assert system.oom_events(1) is None


def test_collect_reports_the_vmstat_count_with_the_events(tmp_path, monkeypatch):
    dmesg_on_path(tmp_path, monkeypatch, tmp_path / "runs")
    facts = system.collect(psutil, [str(tmp_path)], [os.getpid()])
    assert facts["oom_kill_count"] == system.vmstat_oom_kills()
    # This machine's own count decides whether dmesg ran: either way the facts say the same as the count.
    assert (facts["oom_kernel"] == []) == (facts["oom_kill_count"] == 0)
