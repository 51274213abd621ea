"""Log lines and output: never an exception from a write, UTF-8 as it is, secrets redacted."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import structlog
from serverproc import REPO_ROOT, clean_env

from syncd.log import SafeStream, configure_logging, demote_to_debug, dropped_lines


@pytest.fixture
def closed_pipe() -> Iterator[io.TextIOWrapper]:
    """A text stream writing into a pipe whose reader is already gone."""
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    stream = open(write_fd, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        yield stream
    finally:
        with contextlib.suppress(BrokenPipeError):  # what a plain stream still buffers
            stream.close()


def test_json_lines_keep_non_ascii_names_readable() -> None:
    """A JSON log line holds résumé.txt as UTF-8, not as \\u00e9 escapes."""
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    structlog.get_logger("syncd.test").info("uploaded", path="résumé/日本.txt")
    line = out.getvalue().strip()
    assert "résumé/日本.txt" in line and "\\u" not in line
    assert json.loads(line)["path"] == "résumé/日本.txt"


def test_a_log_line_into_a_closed_pipe_is_dropped_and_counted(
    closed_pipe: io.TextIOWrapper,
) -> None:
    """Logging into a pipe nobody reads raises nothing; the lost lines are counted."""
    configure_logging(fmt="json", stream=closed_pipe)
    before = dropped_lines()
    log = structlog.get_logger("syncd.test")
    log.info("stopping", signal=15)
    log.warning("stop_forced")
    assert dropped_lines() - before == 2


def test_safe_stream_points_a_dead_descriptor_at_dev_null(closed_pipe: io.TextIOWrapper) -> None:
    """After EPIPE the descriptor is /dev/null, so the buffered rest flushes harmlessly."""
    stream = SafeStream(closed_pipe)
    before = dropped_lines()
    stream.write("first line\nsecond line\n")
    stream.flush()
    assert stream.broken
    assert os.readlink(f"/proc/self/fd/{closed_pipe.fileno()}") == os.devnull
    stream.write("later\n")
    closed_pipe.write("what the wrapped stream still holds\n")
    closed_pipe.flush()  # would raise BrokenPipeError without the redirect
    assert dropped_lines() - before >= 2


def test_demoted_logger_speaks_only_with_verbose() -> None:
    """Info lines of a demoted logger (the embedded server's) appear only with -v."""
    demote_to_debug("syncd.test_demoted")
    quiet, verbose = io.StringIO(), io.StringIO()
    configure_logging(fmt="json", stream=quiet)
    log = structlog.get_logger("syncd.test_demoted.app")
    log.info("file_created", file_id="file-1")
    log.warning("disk_full")
    configure_logging(fmt="json", stream=verbose, verbose=True)
    log.info("file_created", file_id="file-2")
    assert [json.loads(line)["event"] for line in quiet.getvalue().splitlines()] == ["disk_full"]
    assert json.loads(verbose.getvalue())["level"] == "debug"


def test_a_command_whose_stdout_reader_left_exits_quietly() -> None:
    """`syncd --help | (exit)`: no BrokenPipeError traceback, no "Exception ignored"."""
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "syncd", "sync", "--help"],
            stdout=write_fd,
            stderr=subprocess.PIPE,
            env=clean_env(),
            cwd=REPO_ROOT,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_fd)
    assert b"BrokenPipeError" not in result.stderr and b"Exception ignored" not in result.stderr
    assert result.returncode == 0
