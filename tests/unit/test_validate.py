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


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "nested too deeply"),
        (b'{"a": ' + b"7" * 5000 + b"}\n", "too many digits"),
        (b'{"a": 1}\n[' * 1 + b"{" * 2000 + b"\n", "line 2"),
    ],
)
def test_a_line_that_cannot_be_judged_is_a_reason_not_a_crash(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    """JSON nested 100,000 deep or a 5,000-digit integer (RecursionError / ValueError in
    the parser) gives one reason naming the line; check_jsonl never raises for content."""
    problem = check(tmp_path, "x.jsonl", content, "fine-tune")
    assert problem is not None and reason in problem


def test_a_line_longer_than_the_limit_is_a_reason_read_no_further(tmp_path: Path) -> None:
    """A 33 MiB line is not parsed (it would take a few times its size in memory): the
    reason says how long a line may be."""
    from syncd.local.validate import MAX_LINE_BYTES

    path = tmp_path / "long.jsonl"
    with open(path, "wb") as out:
        out.write(b'{"ok": 1}\n{"a": "')
        out.write(b"x" * (MAX_LINE_BYTES + 1024 * 1024))
        out.write(b'"}\n')
    assert check_jsonl(path, "fine-tune", DEFAULT) == "line 2 is longer than 32 MiB"


@pytest.mark.parametrize("seed", range(20))
def test_check_jsonl_never_raises_on_random_bytes(tmp_path: Path, seed: int) -> None:
    """Whatever bytes a .jsonl holds, the answer is None or one reason, never an exception."""
    import random

    rng = random.Random(seed)
    alphabet = b'{}[]":,0123456789eE.-+ \\\nnulltruefalse\xff\x00ab'
    content = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 3000)))
    path = tmp_path / "random.jsonl"
    path.write_bytes(content)
    for purpose in JSONL_PURPOSES:
        result = check_jsonl(path, purpose, DEFAULT)
        assert result is None or isinstance(result, str)
