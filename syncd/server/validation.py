"""Request checks shared by the Files and Uploads endpoints (purpose, expiry, JSON Lines,
which purposes download).

Each check returns or raises an ``ApiError`` worded like the real API's, naming the
parameter at fault. Values a client sent are checked for their type before use, so a
list where a number belongs is a 400, not a 500.
"""

from __future__ import annotations

import re

from syncd.api import (
    BATCH_DEFAULT_EXPIRY_SECONDS,
    DOWNLOADABLE_PURPOSES,
    EXPIRES_MAX_SECONDS,
    EXPIRES_MIN_SECONDS,
    JSONL_PURPOSES,
    UPLOAD_PURPOSES,
)
from syncd.server.envelope import ApiError, invalid_request
from syncd.server.form import JsonlChecker
from syncd.server.store import IncomingBlob

READ_CHUNK = 1024 * 1024
DIGITS = re.compile(r"[0-9]{1,12}")


def purpose_error(
    purpose: str | None, allowed: tuple[str, ...] = UPLOAD_PURPOSES
) -> ApiError | None:
    if purpose is None or purpose == "":
        return invalid_request(
            "Missing required parameter: 'purpose'.",
            param="purpose",
            code="missing_required_parameter",
        )
    if purpose not in allowed:
        choices = ", ".join(f"'{p}'" for p in allowed)
        return invalid_request(
            f"Invalid value: '{purpose}'. Supported values are: {choices}.",
            param="purpose",
            code="invalid_value",
        )
    return None


def _shown(value: object) -> str:
    """A client's value for an error message: its repr, cut to 100 characters."""
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def parse_expires_after(anchor: object, seconds: object) -> int | None:
    """The validated ``expires_after`` seconds, None when absent; ApiError when bad.

    Values come from a form (strings) or from JSON (any type): ``seconds`` must be an
    integer (JSON) or plain decimal digits (form); floats, booleans, lists, ``"1_0"``
    and ``" 3600"`` are refused.
    """
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise invalid_request(
            f"Invalid value for 'expires_after.anchor': {_shown(anchor)}. Supported values "
            "are: 'created_at'.",
            param="expires_after.anchor",
            code="invalid_value",
        )
    value: int | None = None
    if isinstance(seconds, int) and not isinstance(seconds, bool):
        value = seconds
    elif isinstance(seconds, str) and DIGITS.fullmatch(seconds):
        value = int(seconds)
    if value is None or not EXPIRES_MIN_SECONDS <= value <= EXPIRES_MAX_SECONDS:
        raise invalid_request(
            f"Invalid 'expires_after.seconds': {_shown(seconds)}. Expected an integer between "
            f"{EXPIRES_MIN_SECONDS} and {EXPIRES_MAX_SECONDS}.",
            param="expires_after.seconds",
            code="invalid_value",
        )
    return value


def jsonl_name_error(purpose: str, filename: str) -> ApiError | None:
    if purpose in JSONL_PURPOSES and not filename.lower().endswith(".jsonl"):
        return invalid_request(
            f"Invalid file format for purpose '{purpose}': {filename!r} must be a .jsonl "
            "file (JSON Lines).",
            param="file",
            code="invalid_file_format",
        )
    return None


def invalid_jsonl(filename: str, reason: str) -> ApiError:
    return invalid_request(
        f"Invalid file {filename!r}: {reason}. Each line must be a valid JSON value.",
        param="file",
        code="invalid_file_format",
    )


def check_jsonl_file(blob: IncomingBlob) -> str | None:
    """Run a JsonlChecker over content already on disk; the first fault or None."""
    checker = JsonlChecker()
    with open(blob.path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            checker.feed(chunk)
            if checker.error is not None:
                break
    return checker.finish()


def default_expiry(purpose: str, expires_after: int | None) -> int | None:
    """Batch files expire after 30 days unless ``expires_after`` says otherwise."""
    if expires_after is None and purpose == "batch":
        return BATCH_DEFAULT_EXPIRY_SECONDS
    return expires_after


def download_refusal(purpose: str) -> ApiError | None:
    """The real API's 400 for content of a purpose it does not let anyone download."""
    if purpose in DOWNLOADABLE_PURPOSES:
        return None
    return invalid_request(f"Not allowed to download files of purpose: {purpose}")
