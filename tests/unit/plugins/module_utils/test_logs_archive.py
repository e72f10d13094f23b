"""logs_archive: old logs move into compressed archives, nothing is lost, a second run does nothing."""

import gzip
import os
import time

import psutil

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils import logs_archive


def test_old_logs_are_archived_and_recoverable(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "gunicorn.log").write_text("old run\n" * 1000)
    (logs / "gunicorn.log.1").write_text("older run\n")
    with gzip.open(logs / "gunicorn.log.2.gz", "wt") as f:
        f.write("oldest run\n")
    (logs / "empty.log").write_text("")
    archive = tmp_path / "archive"

    done = logs_archive.run(psutil, [str(logs / "gunicorn.log"), str(logs / "empty.log"), str(logs / "missing.log")],
                            [str(logs / "gunicorn.log.*")], str(archive), "20261125T120000Z", keep=5)

    assert sorted(os.path.basename(a["path"]) for a in done["archived"]) == ["gunicorn.log", "gunicorn.log.1",
                                                                             "gunicorn.log.2.gz"]
    assert sorted(os.listdir(logs)) == ["empty.log"]
    target = archive / "20261125T120000Z"
    with gzip.open(target / "gunicorn.log.gz", "rt") as f:
        assert f.read() == "old run\n" * 1000
    with gzip.open(target / "gunicorn.log.1.gz", "rt") as f:
        assert f.read() == "older run\n"
    with gzip.open(target / "gunicorn.log.2.gz", "rt") as f:
        assert f.read() == "oldest run\n"

    again = logs_archive.run(psutil, [str(logs / "gunicorn.log")], [str(logs / "gunicorn.log.*")], str(archive),
                             "20261125T120100Z", keep=5)
    assert again["archived"] == [] and again["pruned"] == [] and again["archive"] is None
    assert os.listdir(archive) == ["20261125T120000Z"]


def test_a_log_held_open_stays(tmp_path):
    log = tmp_path / "gunicorn.log"
    log.write_text("current run\n")
    with open(log, "a"):
        done = logs_archive.run(psutil, [str(log)], [], str(tmp_path / "archive"), "20261125T120000Z", keep=5)
    assert done["archived"] == []
    assert done["held"] == [{"path": str(log), "pids": [os.getpid()]}]
    assert log.read_text() == "current run\n"


def test_a_log_written_by_the_current_run_stays(tmp_path):
    log = tmp_path / "console.log"
    log.write_text("written after the master started\n")
    started = time.time() - 60
    done = logs_archive.run(psutil, [str(log)], [], str(tmp_path / "archive"), "20261125T120000Z", keep=5,
                            current_since=started)
    assert done["archived"] == [] and log.exists()


def test_keeps_the_newest_archives(tmp_path):
    archive = tmp_path / "archive"
    for stamp in ("20261120T000000Z", "20261121T000000Z", "20261122T000000Z"):
        (archive / stamp).mkdir(parents=True)
    (archive / "notes").mkdir()
    log = tmp_path / "gunicorn.log"
    log.write_text("x\n")
    dry = logs_archive.run(psutil, [str(log)], [], str(archive), "20261123T000000Z", keep=2, dry_run=True)
    assert [os.path.basename(p) for p in dry["pruned"]] == ["20261120T000000Z", "20261121T000000Z"]
    assert log.exists() and len(os.listdir(archive)) == 4
    done = logs_archive.run(psutil, [str(log)], [], str(archive), "20261123T000000Z", keep=2)
    assert sorted(os.listdir(archive)) == ["20261122T000000Z", "20261123T000000Z", "notes"]
    assert [os.path.basename(p) for p in done["pruned"]] == ["20261120T000000Z", "20261121T000000Z"]


def test_a_name_taken_in_the_archive_is_not_overwritten(tmp_path):
    target = tmp_path / "archive" / "20261125T120000Z"
    target.mkdir(parents=True)
    (target / "gunicorn.log.gz").write_bytes(b"earlier copy")
    log = tmp_path / "gunicorn.log"
    log.write_text("second\n")
    done = logs_archive.run(psutil, [str(log)], [], str(tmp_path / "archive"), "20261125T120000Z", keep=5)
    assert done["archived"][0]["archived_as"].endswith("gunicorn.log.gz.1")
    assert (target / "gunicorn.log.gz").read_bytes() == b"earlier copy"
