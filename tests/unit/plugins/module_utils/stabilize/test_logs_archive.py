"""logs_archive: old logs move into compressed archives, nothing is lost, a second run does nothing."""

import gzip
import os
import signal
import stat
import time
from pathlib import Path

import psutil
import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import logs_archive


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


# --- hostile hosts: the app's user controls the log directory (and maybe the archive's) -------------------------
STAMP = "20261125T120000Z"
SECRET = "root:$6$not-a-real-hash:19000:0:99999:7:::\n"


@pytest.fixture
def deadline():
    """A FIFO read would block forever: fail the test after 20 s instead of hanging."""
    def expired(signum, frame):
        raise AssertionError("archiving hung")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def victim(tmp_path):
    """A root-only file outside the logs, like /etc/shadow."""
    (tmp_path / "etc").mkdir(exist_ok=True)
    path = tmp_path / "etc" / "shadow"
    path.write_text(SECRET)
    path.chmod(0o600)
    return path


def all_archived_bytes(archive):
    found = b""
    for root, dirs, files in os.walk(str(archive)):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                data = f.read()
            found += gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return found


def test_symlinks_fifos_devices_and_hard_links_are_refused_not_read(tmp_path, deadline):
    shadow = victim(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "gunicorn.log").symlink_to(shadow)
    (logs / "console.log").symlink_to("/dev/zero")
    os.mkfifo(str(logs / "nohup.out"))
    os.link(str(shadow), str(logs / "app.log"))
    (logs / "real.log").write_text("an old run\n")
    names = ["gunicorn.log", "console.log", "nohup.out", "app.log", "real.log"]

    done = logs_archive.run(psutil, [str(logs / n) for n in names], [], str(tmp_path / "archive"), STAMP, keep=5)

    assert [a["path"] for a in done["archived"]] == [str(logs / "real.log")]
    refused = {os.path.basename(r["path"]): r["why"] for r in done["refused"]}
    assert "symlink" in refused["gunicorn.log"] and "symlink" in refused["console.log"]
    assert "FIFO" in refused["nohup.out"] and "hard links" in refused["app.log"]
    assert SECRET.encode() not in all_archived_bytes(tmp_path / "archive")
    assert shadow.read_text() == SECRET and os.path.islink(str(logs / "gunicorn.log"))
    assert sorted(os.listdir(str(logs))) == sorted(names[:4])


def test_a_log_behind_a_directory_symlink_of_the_app_user_is_not_archived(tmp_path):
    """The app's user owns the log directory's parent and points `logs` at a root directory holding a file of
    the log's name: archiving must not copy it, let alone delete it."""
    shadow = victim(tmp_path)
    (tmp_path / "etc" / "gunicorn.log").write_text(SECRET)
    app = tmp_path / "app"
    app.mkdir()
    (app / "logs").symlink_to(shadow.parent)
    os.lchown(str(app / "logs"), 65534, 65534)

    done = logs_archive.run(psutil, [str(app / "logs" / "gunicorn.log")], [], str(tmp_path / "archive"), STAMP, keep=5)

    assert done["archived"] == []
    assert "not followed" in done["refused"][0]["why"]
    assert (tmp_path / "etc" / "gunicorn.log").read_text() == SECRET
    assert SECRET.encode() not in all_archived_bytes(tmp_path / "archive")


def test_names_planted_in_the_archive_are_never_written_through(tmp_path):
    shadow = victim(tmp_path)
    target = tmp_path / "archive" / STAMP
    target.mkdir(parents=True)
    for name in ("gunicorn.log.gz", "gunicorn.log.gz.part", "gunicorn.log.gz.1.part"):  # the names a writer may try
        (target / name).symlink_to(shadow)
    log = tmp_path / "gunicorn.log"
    log.write_text("an old run\n")

    done = logs_archive.run(psutil, [str(log)], [], str(tmp_path / "archive"), STAMP, keep=5)

    assert shadow.read_text() == SECRET
    archived_as = Path(done["archived"][0]["archived_as"])
    assert archived_as.name == "gunicorn.log.gz.1" and not archived_as.is_symlink()
    assert gzip.decompress(archived_as.read_bytes()) == b"an old run\n"
    assert stat.S_IMODE(archived_as.stat().st_mode) == 0o600
    assert not log.exists()


def test_an_archive_directory_planted_as_a_symlink_is_not_followed(tmp_path):
    """The archive lives where the app's user can write, and they plant this run's directory as a link."""
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    archive = tmp_path / "archive"
    archive.mkdir()
    os.chown(str(archive), 65534, 65534)
    (archive / STAMP).symlink_to(elsewhere)
    os.lchown(str(archive / STAMP), 65534, 65534)
    log = tmp_path / "gunicorn.log"
    log.write_text("an old run\n")

    with pytest.raises(OSError):
        logs_archive.run(psutil, [str(log)], [], str(archive), STAMP, keep=5)

    assert os.listdir(str(elsewhere)) == []
    assert log.read_text() == "an old run\n"


def test_pruning_never_follows_a_planted_archive_link(tmp_path):
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    (elsewhere / "passwd").write_text(SECRET)
    archive = tmp_path / "archive"
    (archive / "20200101T000000Z").mkdir(parents=True)
    (archive / "20200101T000000Z" / "inside").symlink_to(elsewhere)
    (archive / "20190101T000000Z").symlink_to(elsewhere)
    log = tmp_path / "gunicorn.log"
    log.write_text("x\n")

    done = logs_archive.run(psutil, [str(log)], [], str(archive), STAMP, keep=1)

    assert [os.path.basename(p) for p in done["pruned"]] == ["20200101T000000Z"]
    assert (elsewhere / "passwd").read_text() == SECRET
    assert sorted(os.listdir(str(archive))) == ["20190101T000000Z", STAMP]


def test_a_log_swapped_for_a_fifo_or_a_symlink_after_the_scan_is_refused(tmp_path, deadline):
    target = tmp_path / "archive"
    target.mkdir()
    fd = os.open(str(target), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fifo = tmp_path / "gunicorn.log"
        os.mkfifo(str(fifo))
        with pytest.raises(logs_archive.Refused):
            logs_archive.archive_file(str(fifo), fd, str(target))
        link = tmp_path / "console.log"
        link.symlink_to(victim(tmp_path))
        with pytest.raises(logs_archive.Refused):
            logs_archive.archive_file(str(link), fd, str(target))
    finally:
        os.close(fd)
    assert os.listdir(str(target)) == []
