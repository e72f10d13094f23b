"""The ladder, the first thing a user reads: every line says its finding whole, in plain words, within
the width; a finding too long for a line is shortened at a word boundary and the report has it whole."""

from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils import report_text
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.report_text import MORE, WIDTH, ladder

from test_verdict import diagnose, healthy_facts, set_healthz  # noqa: I100 - the recorded facts of a host

LONG_REMEDY = ("set doctor_public_base_url (e.g. https://voice.example.com) or PUBLIC_BASE_URL in the service "
               "environment to the https address Twilio uses, then run the diagnosis again from the controller so "
               "the external layer can check the TLS certificate, the proxy and the WebSocket handshake end to end")


def report_of(tmp_path, edit=None):
    facts = healthy_facts(tmp_path)
    if edit:
        edit(facts)
    return diagnose(facts)


def words_of(text):
    return text.replace(MORE, " ").split()


def test_no_line_is_wider_than_the_width_and_none_is_cut_inside_a_word(tmp_path):
    def started_by_a_long_runner(facts):
        facts["process"]["masters"][0]["runner"] = {
            "kind": "standalone",
            "detail": ("gunicorn --daemon --pid /run/agentlocator/gunicorn.pid --bind 0.0.0.0:8123 --workers 1 "
                       "--access-logfile /var/log/agentlocator/access.log AgentLocator.main:app")}
        set_healthz(facts, [200] * 26)
    report = report_of(tmp_path, started_by_a_long_runner)
    report["causes"] = [{"id": "external_unreachable", "layer": "external", "severity": "fail",
                         "evidence": ["no public URL: " + LONG_REMEDY], "remedy": LONG_REMEDY, "twilio_error": None}]
    lines = ladder(report, ["doctor-reports/web1.json"])
    assert all(len(line) <= WIDTH for line in lines), [line for line in lines if len(line) > WIDTH]
    vocabulary = set(" ".join(str(v) for v in _strings(report)).split())
    for line in lines:
        if line.endswith(MORE):
            assert words_of(line)[-1] in vocabulary, line   # the last word shown is a whole word of the finding
    fix = [line for line in lines if line.startswith("    fix: ") or line.startswith(" " * 9)]
    assert " ".join(words_of(" ".join(fix))) == "fix: " + LONG_REMEDY   # fits in REMEDY_LINES: whole
    assert lines[-2].startswith("  (lines ending in") and lines[-1] == "  report: doctor-reports/web1.json"


def test_healthz_samples_are_summarised_not_listed(tmp_path):
    report = report_of(tmp_path, lambda facts: set_healthz(facts, [200] * 26))
    line = next(line for line in ladder(report) if line.strip().startswith("healthz"))
    assert "26 x 200 over" in line and not line.endswith(MORE)


def test_a_flapping_window_reads_as_runs():
    samples = [{"status": s, "error": e} for s, e in [(200, None)] * 3 + [(None, "Connection refused")] * 2 +
               [(502, None)]]
    from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges.healthz import answers_in_runs
    assert answers_in_runs(samples) == "3 x 200, then 2 x Connection refused, then 1 x 502"
    many = [{"status": 200 if i % 2 else 500, "error": None} for i in range(10)]
    assert answers_in_runs(many).endswith("then 6 more changes")


def test_host_output_with_newlines_stays_on_its_line():
    assert report_text._fit("Traceback:\n  File x\n\tboom", 80) == "Traceback: File x boom"


def test_fit_shortens_at_a_word_boundary():
    text = "started by standalone: gunicorn --daemon --pid /run/app.pid AgentLocator.main:app"
    assert report_text._fit(text, 40) == "started by standalone: gunicorn" + MORE
    assert report_text._fit(text, len(text)) == text
    assert report_text._fit("x" * 50, 20) == "x" * 16 + MORE     # one word longer than the line is cut


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value
