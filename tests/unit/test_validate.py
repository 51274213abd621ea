"""Pre-upload validation: size limits, purposes, JSONL content, batch lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncd.api import JSONL_PURPOSES
from syncd.local.validate import Limits, check_jsonl, check_name, check_size

GOOD_BATCH = json.dumps(
    {"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}
)


DEFAULT = Limits()


# Every check, in the order the engine applies them (size and name before reading).
def validate_file(file: Path, rel_path: str, size: int, purpose: str, limits: Limits) -> str | None:
    """Every check for uploading ``file`` (known as ``rel_path``) with ``purpose``.

    Returns the reason it cannot be uploaded, or None. Raises OSError if the file cannot
    be read (the caller reports that as a per-file error, not a validation failure).
    """
    problem = check_size(size, purpose, limits) or check_name(rel_path, purpose)
    if problem is None and purpose in JSONL_PURPOSES:
        problem = check_jsonl(file, purpose, limits)
    return problem


def check(tmp_path: Path, name: str, content: bytes, purpose: str, limits: Limits = DEFAULT):
    path = tmp_path / name
    path.write_bytes(content)
    return validate_file(path, name, len(content), purpose, limits)


@pytest.mark.parametrize(
    ("name", "content", "purpose", "reason"),
    [
        ("a.txt", b"hello", "user_data", None),
        ("a.txt", b"", "user_data", "empty file"),
        ("a.jsonl", b'{"a": 1}\n{"b": 2}\n', "fine-tune", None),
        ("a.jsonl", b'{"a": 1}\r\n{"b": 2}', "evals", None),  # CRLF, no final newline
        ("a.json", b'{"a": 1}\n', "fine-tune", "needs a .jsonl file"),
        ("a.jsonl", b'{"a": 1}\n{"b": \n', "fine-tune", "line 2 is not valid JSON"),
        ("a.jsonl", b'{"a": 1}\n\n{"b": 2}\n', "fine-tune", "line 2 is empty"),
        ("a.jsonl", b"[1, 2]\n", "fine-tune", "line 1 is not a JSON object"),
        ("a.jsonl", b'{"a": "\xff"}\n', "fine-tune", "line 1 is not valid UTF-8"),
        ("a.jsonl", b"\n\n", "fine-tune", "no JSON lines"),
        ("b.jsonl", GOOD_BATCH.encode() + b"\n", "batch", None),
        ("b.jsonl", b'{"custom_id": "1", "body": {}}\n', "batch", "line 1 lacks method, url"),
        ("b.jsonl", GOOD_BATCH.replace('{"model": "m"}', '"x"').encode(), "batch", "body"),
        ("a.jsonl", b"not json at all", "user_data", None),  # only JSONL purposes are parsed
        ("a.txt", b"x", "nonsense", "is not one of"),
    ],
)
def test_validate_file(
    tmp_path: Path, name: str, content: bytes, purpose: str, reason: str | None
) -> None:
    """Each bad file gets a reason naming the problem (and the line); good ones pass."""
    result = check(tmp_path, name, content, purpose)
    if reason is None:
        assert result is None
    else:
        assert result is not None and reason in result


def test_size_limits(tmp_path: Path) -> None:
    """Over the per-file limit or batch limits is refused with the limit in the reason."""
    limits = Limits(max_file_bytes=10, batch_max_bytes=8, batch_max_lines=2)
    assert "11 bytes is over the 10-byte limit" in check(
        tmp_path, "a.txt", b"x" * 11, "user_data", limits
    )
    assert "limit for batch" in check(tmp_path, "b.jsonl", b"{}\n" * 3, "batch", limits)
    limits = Limits(batch_max_lines=2)
    line = GOOD_BATCH.encode() + b"\n"
    assert "more than 2 lines" in check(tmp_path, "b.jsonl", line * 3, "batch", limits)


def test_unreadable_file_raises_oserror(tmp_path: Path) -> None:
    """A file that cannot be read is an OSError for the caller, not a validation reason."""
    with pytest.raises(OSError):
        validate_file(tmp_path / "gone.jsonl", "gone.jsonl", 5, "fine-tune", Limits())
