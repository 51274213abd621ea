"""Checks a file must pass before syncd uploads it; each failure is one clear reason.

A file that fails is reported with its path and the reason, recorded in the ledger as a
permanent failure and not tried again until it changes. The checks mirror what the
Files API itself refuses (so a refusal costs no request):

- an empty file (0 bytes);
- more than ``max_file_bytes`` (the API's 512 MB; tests lower it), unless the purpose
  is one the Uploads API takes (assistants, batch, fine-tune, vision), whose files may
  have up to ``max_upload_bytes`` (8 GB) and are sent in parts
  (``syncd.sync.multipart``);
- for purposes ``fine-tune``, ``batch`` and ``evals``: a name not ending in ``.jsonl``,
  a line that is not valid UTF-8 JSON object (named by its number; a blank line counts,
  except a final newline);
- for ``batch``: more than 200 MB or 50,000 lines, or a line without ``custom_id``,
  ``method``, ``url`` and an object ``body``.

Content checks stream the file line by line, so memory stays small: a line longer than
``MAX_LINE_BYTES`` (32 MiB; it is parsed whole, a few times its size in memory) is a
reason of its own. The checks never raise for what a file holds: a line that cannot be
judged (JSON nested too deeply for the parser, an integer of more digits than Python
reads, anything else unexpected) is the reason "line N cannot be judged (...)".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from syncd.api import (
    BATCH_KEYS,
    BATCH_MAX_BYTES,
    BATCH_MAX_LINES,
    JSONL_PURPOSES,
    MAX_FILE_BYTES,
    MAX_UPLOAD_BYTES,
    UPLOAD_PURPOSES,
    UPLOADS_API_PURPOSES,
)

MAX_LINE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Upload limits; the defaults are the Files API's."""

    max_file_bytes: int = MAX_FILE_BYTES
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    batch_max_bytes: int = BATCH_MAX_BYTES
    batch_max_lines: int = BATCH_MAX_LINES


def _megabytes(n: int) -> str:
    if n >= 1_000_000_000 and n % 1_000_000_000 == 0:
        return f"{n // 1_000_000_000} GB"
    return f"{n / 1_000_000:g} MB" if n >= 1_000_000 else f"{n}-byte"


def check_size(size: int, purpose: str, limits: Limits) -> str | None:
    """The reason a file of ``size`` bytes cannot be uploaded, or None."""
    if size == 0:
        return "empty file (0 bytes); the Files API refuses empty files"
    if size > limits.max_file_bytes and purpose not in UPLOADS_API_PURPOSES:
        return (
            f"{size} bytes is over the {_megabytes(limits.max_file_bytes)} limit per file "
            f"for purpose {purpose} (only {', '.join(UPLOADS_API_PURPOSES)} files may be "
            f"larger, up to {_megabytes(limits.max_upload_bytes)}, through the Uploads API)"
        )
    if size > limits.max_upload_bytes:
        return (
            f"{size} bytes is over the {_megabytes(limits.max_upload_bytes)} limit of the "
            "Uploads API"
        )
    if purpose == "batch" and size > limits.batch_max_bytes:
        return f"{size} bytes is over the {_megabytes(limits.batch_max_bytes)} limit for batch"
    return None


def check_name(path: str, purpose: str) -> str | None:
    """The reason ``path`` cannot carry ``purpose``, or None."""
    if purpose not in UPLOAD_PURPOSES:
        return f"purpose {purpose!r} is not one of {', '.join(UPLOAD_PURPOSES)}"
    if purpose in JSONL_PURPOSES and not path.endswith(".jsonl"):
        return f"purpose {purpose} needs a .jsonl file"
    return None


def _check_line(raw: bytes, number: int, purpose: str) -> str | None:
    """The reason line ``number`` is not a line for ``purpose``, or None; never raises."""
    try:
        return _judge_line(raw, number, purpose)
    except RecursionError:
        return f"line {number} cannot be judged (JSON nested too deeply to read)"
    except ValueError as exc:  # int(): "Exceeds the limit (4300 digits) for integer string..."
        if "digits" in str(exc):
            return f"line {number} cannot be judged (a number with too many digits to read)"
        return f"line {number} cannot be judged ({type(exc).__name__})"
    except MemoryError:
        return f"line {number} cannot be judged (too big to read in memory)"
    except Exception as exc:  # whatever a line holds, one reason, never a crash
        return f"line {number} cannot be judged ({type(exc).__name__})"


def _judge_line(raw: bytes, number: int, purpose: str) -> str | None:
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return f"line {number} is not valid UTF-8"
    except json.JSONDecodeError as exc:
        return f"line {number} is not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(value, dict):
        return f"line {number} is not a JSON object"
    if purpose == "batch":
        missing = [key for key in BATCH_KEYS if key not in value]
        if missing:
            needed = ", ".join(BATCH_KEYS)
            return f"line {number} lacks {', '.join(missing)} (a batch line needs {needed})"
        if not isinstance(value["body"], dict):
            return f"line {number}: body is not a JSON object"
    return None


def check_jsonl(file: Path, purpose: str, limits: Limits) -> str | None:
    """The first problem in a JSONL file for ``purpose`` (by line number), or None."""
    blank_at: int | None = None
    count = 0
    with open(file, "rb") as stream:
        # A line longer than the limit is read only up to it (plus "\r\n").
        for number, raw in enumerate(iter(lambda: stream.readline(MAX_LINE_BYTES + 2), b""), 1):
            line = raw.rstrip(b"\r\n")
            if len(line) > MAX_LINE_BYTES:
                return f"line {number} is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB"
            if not line.strip():
                blank_at = blank_at or number
                continue
            if blank_at is not None:
                return f"line {blank_at} is empty"
            count += 1
            if purpose == "batch" and count > limits.batch_max_lines:
                return f"more than {limits.batch_max_lines} lines (the limit for batch)"
            problem = _check_line(line, number, purpose)
            if problem:
                return problem
    if count == 0:
        return "no JSON lines in the file"
    return None
