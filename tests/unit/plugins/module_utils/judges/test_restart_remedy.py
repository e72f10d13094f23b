"""periodic_sigterm on a real restart loop's log (domain/logs/restart_loop.log, gunicorn 25.3 SIGTERMed every ~3 s by a
bash loop): the evidence has the pattern, the timeline and who restarts it; the remedy names that runner and its
setting; the report's restart_history, the ladder and the Markdown summary show them."""

from pathlib import Path

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import logfile
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils import report_text

from test_verdict import cause, diagnose, healthy_facts, master_fact, set_healthz, set_sockets, sock  # noqa: I100

LOG = Path(__file__).resolve().parents[1] / "domain" / "logs" / "restart_loop.log"
LOOP = "bash -c while true; do python -m gunicorn AgentLocator.main:app -b 0.0.0.0:$1 & pid=$!; sleep 2; kill $pid; done"


def runner(kind, **values):
    base = {"kind": kind, "pid": None, "name": None, "command": None, "source": None, "settings": {}, "found": ""}
    base.update(values)
    return base


def restarted_facts(tmp_path, runners, checkers=()):
    facts = healthy_facts(tmp_path)
    facts["process"]["masters"] = [master_fact(pid=15080, age=2.0, workers=1,
                                               runner={"kind": "shell_loop", "pid": 14700, "detail": LOOP})]
    facts["process"]["restarters"] = {"runners": runners, "health_checkers": list(checkers)}
    facts["system"]["nofile_masters"] = [{"pid": 15080, "soft": 65536, "hard": 65536}]
    set_sockets(facts, [sock("0.0.0.0", 8123, 15080, "master")])
    set_healthz(facts, [200] * 6, wait_reason="master 15080 is only 2.0 s old")
    facts["log"] = logfile.collect(str(LOG))
    facts["inputs"]["log_file"] = str(LOG)
    return facts


CASES = [
    (runner("shell_loop", pid=14700, name="bash", command=LOOP, found="the parent chain of master 15080"),
     "restarted by: bash loop pid 14700: %s, found by the parent chain of master 15080" % LOOP,
     "Stop the restarts where they come from: bash loop pid 14700 (%s) restarts it every 3 s: stop it (kill 14700)"
     % LOOP[:100]),
    (runner("supervisord", pid=700, name="voice", source="/etc/supervisor/conf.d/voice.conf",
            settings={"autorestart": "true", "startsecs": "1", "startretries": "3 (default)"}, found="x"),
     "restarted by: supervisord program voice (/etc/supervisor/conf.d/voice.conf): autorestart=true, startretries=3 "
     "(default), startsecs=1, found by x",
     "supervisord program voice (/etc/supervisor/conf.d/voice.conf): autorestart=true, startsecs=1 - supervisord "
     "starts the master again each time it exits (every 3 s); remove what stops it"),
    (runner("systemd", name="voice.service", source="/etc/systemd/system/voice.service",
            settings={"Restart": "always", "WatchdogSec": "5"}, found="its ExecStart runs AgentLocator.main:app"),
     "restarted by: systemd unit voice.service (/etc/systemd/system/voice.service): Restart=always, WatchdogSec=5, "
     "found by its ExecStart runs AgentLocator.main:app",
     "systemd unit voice.service (/etc/systemd/system/voice.service): WatchdogSec=5, Restart=always - gunicorn never "
     "sends WATCHDOG=1, so systemd kills the master every 5 s and restarts it: remove WatchdogSec=, then systemctl "
     "daemon-reload && systemctl restart voice.service"),
    (runner("cron", source="/etc/cron.d/voice", command="* * * * * root /srv/start-voice.sh", found="y"),
     "restarted by: cron (/etc/cron.d/voice): * * * * * root /srv/start-voice.sh, found by y",
     "cron starts it (* * * * * root /srv/start-voice.sh): remove the crontab line in /etc/cron.d/voice"),
]


@pytest.mark.parametrize("found, evidence, remedy", CASES, ids=[c[0]["kind"] for c in CASES])
def test_the_remedy_names_the_runner_and_its_setting(tmp_path, found, evidence, remedy):
    report = diagnose(restarted_facts(tmp_path, [found]))
    c = cause(report, "periodic_sigterm")
    assert c["evidence"][0].endswith(": restarted 3 times in 9 s, every 3 s +/- 1 (4 x SIGTERM)")
    assert c["evidence"][0].startswith('4 x "Handling signal: term" in the last 10 min of ')
    assert c["evidence"][1].startswith("timeline: 19:00:57 master 14740 started (sync, http://0.0.0.0:18777)")
    assert evidence in c["evidence"]
    assert remedy in c["remedy"]
    assert report["restart_history"]["runner"]["text"] == evidence[len("restarted by: "):]


def test_a_health_check_on_another_port_is_in_the_evidence_and_the_remedy(tmp_path):
    checker = {"pid": 5150, "command": "bash -c while true; do curl -fs http://127.0.0.1:8000/healthz || ...", "ports": [8000]}
    report = diagnose(restarted_facts(tmp_path, [], [checker]))
    c = cause(report, "periodic_sigterm")
    assert "health check on another port: pid 5150 asks port 8000: %s" % checker["command"] in c["evidence"]
    assert "pid 5150 (%s) checks port 8000, not $PORT=8123: point it at 8123" % checker["command"][:80] in c["remedy"]
    assert "find who sends TERM (shell_loop (%s))" % LOOP[:120] in c["remedy"]


def test_the_report_ladder_and_summary_show_the_history(tmp_path):
    found = CASES[0][0]
    report = diagnose(restarted_facts(tmp_path, [found]))
    history = report["restart_history"]
    assert history["pattern"] == "restarted 3 times in 9 s, every 3 s +/- 1 (4 x SIGTERM)"
    assert (history["restarts"], history["period"], history["jitter"]) == (3, 3, 1)
    assert len(history["timeline"]) == 4 and history["timeline"][-1].startswith("19:01:06 master 15080 started")
    ladder = report_text.ladder(report)
    assert any(line.startswith("  restarts: restarted 3 times in 9 s, every 3 s +/- 1 (4 x SIGTERM) - by bash loop "
                               "pid 14700") for line in ladder), ladder
    text = report_text.markdown(report)
    assert "## Restart history" in text and "- 19:00:57 master 14740 started" in text
    assert "Restarted by: bash loop pid 14700" in text


def test_a_healthy_service_has_a_history_without_a_pattern(tmp_path):
    report = diagnose(healthy_facts(tmp_path))
    assert report["restart_history"]["pattern"] is None and report["restart_history"]["runner"] is None
    assert not any(line.startswith("  restarts:") for line in report_text.ladder(report))
    facts = healthy_facts(tmp_path)
    facts["log"] = None
    assert diagnose(facts)["restart_history"] is None
