"""safe_read and its callers on real hostile files: a FIFO nobody writes, a symlink to /dev/zero, a directory,
a socket, a big log. Each read must come back at once with a one-line reason, never hang or fill memory."""

import os
import socket
import time

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import logs_archive, stability
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common import safe_read
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import service_env
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import logfile

FAST = 1.0   # seconds: every refusal is immediate; a hang would block far longer


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "gunicorn.log"
    os.mkfifo(path)          # nobody ever opens it for writing: a plain open() for reading blocks forever
    return path


@pytest.fixture
def zero_link(tmp_path):
    path = tmp_path / "zero.log"
    os.symlink("/dev/zero", path)   # endless bytes: a plain read() fills memory
    return path


def timed(func, *args, **kwargs):
    started = time.monotonic()
    result = func(*args, **kwargs)
    assert time.monotonic() - started < FAST
    return result


def test_a_fifo_is_refused_without_blocking(fifo):
    done = timed(safe_read.read_bytes, str(fifo), 1024, tail=True, follow=True)
    assert done.data is None and done.error == "is a FIFO (named pipe), not a regular file"


def test_a_symlink_to_dev_zero_is_refused_followed_or_not(zero_link):
    followed = timed(safe_read.read_bytes, str(zero_link), 1 << 20, follow=True)
    assert followed.data is None and followed.error == "links to /dev/zero, a character device, not a regular file"
    unfollowed = timed(safe_read.read_bytes, str(zero_link), 1 << 20)
    assert unfollowed.error == "is a symbolic link (to /dev/zero), where a regular file is expected"


def test_a_symlink_to_a_regular_file_is_read_only_where_links_are_expected(tmp_path):
    real = tmp_path / "real.env"
    real.write_text("PORT=8123\n")
    link = tmp_path / "link.env"
    os.symlink(real, link)
    assert safe_read.read_text(str(link), 100).error == "is a symbolic link (to %s), where a regular file is expected" \
        % real
    assert safe_read.read_text(str(link), 100, follow=True).data == "PORT=8123\n"


def test_a_directory_a_socket_and_a_missing_file(tmp_path):
    assert safe_read.read_bytes(str(tmp_path), 10).error == "is a directory, not a regular file"
    sock_path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(sock_path)
        assert safe_read.read_bytes(sock_path, 10).error == "is a socket, not a regular file"
    assert safe_read.read_bytes(str(tmp_path / "nope"), 10).error == "does not exist"
    assert safe_read.refusal(str(tmp_path / "nope")) == "does not exist"


def test_a_big_log_gives_its_tail_and_a_config_its_head(tmp_path):
    path = tmp_path / "big.log"
    with open(path, "wb") as f:
        for i in range(200000):
            f.write(b"line %06d\n" % i)      # 2.4 MB
    size = os.path.getsize(path)
    tail = safe_read.read_text(str(path), 1000, tail=True)
    assert (tail.size, tail.truncated, len(tail.data)) == (size, True, 1000)
    assert tail.data.endswith("line 199999\n")
    head = safe_read.read_text(str(path), 24)
    assert (head.data, head.truncated) == ("line 000000\nline 000001\n", True)
    whole = safe_read.read_bytes(str(path), size)
    assert (len(whole.data), whole.truncated) == (size, False)
    after = safe_read.read_text(str(path), 1 << 20, start=size - 12)
    assert (after.data, after.truncated) == ("line 199999\n", False)


def test_proc_files_have_no_size_and_are_read_to_the_limit():
    done = safe_read.read_text("/proc/self/status", 64 << 10)
    assert done.size == 0 and done.data.startswith("Name:") and "Pid:" in done.data


def test_open_regular_streams_only_a_regular_file(fifo, tmp_path):
    f, error = timed(safe_read.open_regular, str(fifo))
    assert f is None and error == "is a FIFO (named pipe), not a regular file"
    (tmp_path / "ok").write_bytes(b"abc")
    f, error = safe_read.open_regular(str(tmp_path / "ok"))
    with f:
        assert (f.read(), error) == (b"abc", None)


# --- the callers --------------------------------------------------------------------------------------------
def test_the_log_probe_names_a_fifo_and_dev_zero_as_input_errors(fifo, zero_link):
    with pytest.raises(logfile.LogFileError, match="^is a FIFO"):
        timed(logfile.collect, str(fifo))
    with pytest.raises(logfile.LogFileError, match="^links to /dev/zero, a character device"):
        timed(logfile.collect, str(zero_link))


def test_a_log_path_that_is_a_symlink_to_a_real_log_is_followed(tmp_path):
    real = tmp_path / "real.log"
    real.write_text("[2026-11-25 12:00:00 +0000] [42] [INFO] Starting gunicorn 23.0.0\n")
    os.symlink(real, tmp_path / "current.log")
    facts = logfile.collect(str(tmp_path / "current.log"))
    assert [e["event"] for e in facts["events"]] == ["starting"]


def test_stability_and_service_env_reads_skip_a_fifo_and_dev_zero(fifo, zero_link):
    for path in (str(fifo), str(zero_link)):
        assert timed(logfile.tail_lines, path) == []
        assert timed(stability.LogTail(path, from_start=True).read) == []
        assert timed(service_env.read_text, path) is None
    assert timed(stability.why_from_logs, [str(fifo), str(zero_link)]) == (None, [])


def test_log_archiving_refuses_a_fifo_swapped_in(fifo, tmp_path):
    archive = logs_archive.open_dir(str(tmp_path / "archive"), create=True)
    try:
        with pytest.raises(logs_archive.Refused, match="a FIFO"):
            timed(logs_archive.archive_file, str(fifo), archive, str(tmp_path / "archive"))
    finally:
        os.close(archive)
    assert logs_archive.candidates([str(fifo)], [], str(tmp_path / "archive"))[0] == []   # listed as refused
