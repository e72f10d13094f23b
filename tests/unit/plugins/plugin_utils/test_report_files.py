"""The controller's report files: a host name cannot write outside the report directory, files are
written atomically with mode 0640, and the per-host Markdown is inert (report_text.markdown)."""

import os
import stat

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils import fleet
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.report_files import (
    ReportPathError, host_file_name, host_report_path, report_dir_path, write_private, write_stabilize_record)
from ansible_collections.sre.gunicorn_doctor.plugins.plugin_utils.report_text import ladder, markdown

from test_fleet import report as fleet_report, cause   # noqa: I100  (the fleet tests' report builder)


# --- host names ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["web1", "web1.example.com", "10.0.0.5", "fe80::1", "voice_eu-2", "a..b", "web@dc1"])
def test_ordinary_host_names_are_file_names(host):
    assert host_file_name(host) == host


@pytest.mark.parametrize("host", ["../evil", "a/b", "/etc/cron.d/x", "..", ".", ".hidden", "a\x00b", "web\n1", "", None,
                                  "x" * 201])
def test_host_names_that_are_no_plain_file_name_are_refused_in_one_line(host):
    with pytest.raises(ReportPathError) as e:
        host_file_name(host)
    message = str(e.value)
    assert "\n" not in message and "doctor_report_dir" in message and "inventory name" in message


def test_report_path_stays_in_the_directory(tmp_path):
    assert host_report_path(str(tmp_path), "web1", ".stabilize.json") == str(tmp_path / "web1.stabilize.json")
    with pytest.raises(ReportPathError):
        host_report_path(str(tmp_path), "../evil", ".json")


# --- writing ------------------------------------------------------------------------------------------------
def test_files_are_0640_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        path = str(tmp_path / "web1.json")
        write_private(path, u'{"evidence": "caf\u00e9"}\n')
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert open(path, encoding="utf-8").read() == u'{"evidence": "caf\u00e9"}\n'
    assert os.listdir(str(tmp_path)) == ["web1.json"]          # no temporary file left behind


def test_a_symlink_at_the_report_path_is_replaced_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    (tmp_path / "reports").mkdir()
    link = tmp_path / "reports" / "web1.json"
    link.symlink_to(target)
    write_private(str(link), "{}\n")
    assert target.read_text() == "keep me"
    assert not link.is_symlink() and link.read_text() == "{}\n"


def test_a_created_report_dir_is_0750(tmp_path):
    created = report_dir_path(str(tmp_path / "new" / "reports"))
    assert stat.S_IMODE(os.stat(created).st_mode) & 0o027 == 0


# --- the per-host Markdown ----------------------------------------------------------------------------------
HOSTILE_LOG = "<script>alert(1)</script>\n# Owned heading\n![x](https://attacker.example/pixel.png) | `rm -rf /`"


def hostile_report():
    found = fleet_report("web1", "down", [cause("boot_exception", "boot", evidence=[HOSTILE_LOG, "Traceback line 2"])])
    found["layers"][0]["checks"][0]["detail"] = "gunicorn: master [<img src=x onerror=alert(1)>]\n## app"
    found["port"], found["port_source"] = 8123, "env_file <b>x</b>"
    return found


def test_markdown_escapes_html_and_keeps_each_value_on_its_line():
    text = markdown(hostile_report())
    assert "<script>" not in text and "<img" not in text and "<b>" not in text
    assert "&lt;script>alert(1)&lt;/script>" in text
    lines = text.splitlines()
    assert not [line for line in lines if line.startswith(("# Owned", "## app"))], text
    assert [line for line in lines if line.startswith("#")] == [
        "# web1: DOWN - first failing layer: boot", "## Causes", "### `boot_exception` (boot, fail)"]
    evidence = next(line for line in lines if "alert(1)" in line and line.startswith("- "))
    assert "# Owned heading" in evidence and "](" not in evidence and "`" not in evidence
    row = next(line for line in lines if line.startswith("| port |"))
    assert row.count(" | ") == 2 and "&lt;img" in row      # the value's own pipe/newline add no column or row


def test_markdown_of_an_ordinary_report_reads_as_before():
    text = markdown(fleet_report("web1", "down", [cause("not_listening", "listen")]))
    assert "| listen | fail | listen check: fail - listen detail |" in text
    assert "- not_listening seen" in text and "**Remedy:** fix not_listening" in text


def test_ladder_lines_carry_no_control_characters():
    lines = ladder(hostile_report())
    assert all("\n" not in line and "\x1b" not in line for line in lines)


def test_fleet_cells_carry_no_link_or_image():
    assert "](" not in fleet.md_cell("![x](https://attacker.example/p.png)")


def test_the_stabilize_record_is_written_redacted_and_private_by_the_one_writer(tmp_path):
    """The stabilize_plan action's summary and the report action write HOST.stabilize.json through this function."""
    record = {"result": "stabilized", "actions": [{"action": "stopped process", "target": "12 (gunicorn --auth-token s3cr3tvalue9)"}]}
    path, written = write_stabilize_record(str(tmp_path / "reports"), "web1", record)
    assert path == str(tmp_path / "reports" / "web1.stabilize.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    text = open(path).read()
    assert "s3cr3tvalue9" not in text and "s3cr3tvalue9" not in str(written) and written["result"] == "stabilized"
    with pytest.raises(ReportPathError):
        write_stabilize_record(str(tmp_path / "reports"), "../evil", record)
    assert sorted(os.listdir(tmp_path / "reports")) == ["web1.stabilize.json"]
