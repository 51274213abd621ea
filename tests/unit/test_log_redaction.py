"""Log redaction is the last line of defence: tracebacks, nested values, URL credentials."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from syncd.log import configure_logging, redact_text, register_secret

SECRET = "azure0123456789abcdef0123456789ab"  # no sk- prefix: only registration finds it


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Logging configured as the CLI does (JSON), into a buffer; reset afterwards."""
    out = io.StringIO()
    register_secret(SECRET)
    configure_logging(fmt="json", stream=out)
    yield out
    structlog.reset_defaults()


def test_a_traceback_is_redacted_after_it_is_formatted(log_lines: io.StringIO) -> None:
    """An exception whose message holds the key is logged with exc_info: the formatted
    traceback carries no key (redaction runs after format_exc_info)."""
    try:
        raise ValueError(f"Illegal header value b'Bearer {SECRET}'")
    except ValueError:
        structlog.get_logger("t").exception("internal_error")
    line = log_lines.getvalue()
    assert "Traceback" in line and "ValueError" in line
    assert SECRET not in line
    assert "[REDACTED]" in line


def test_nested_values_are_redacted(log_lines: io.StringIO) -> None:
    """Dicts and lists bound to a log call are walked; secret-named keys are blanked."""
    structlog.get_logger("t").info(
        "event",
        settings={"headers": {"Authorization": f"Bearer {SECRET}"}, "urls": ["http://u:pw@h/"]},
        errors=[("x", f"key {SECRET} refused")],
        detail={"api_key": "anything", "deep": [[[{"token": "t"}]]]},
    )
    entry = json.loads(log_lines.getvalue())
    text = json.dumps(entry)
    assert SECRET not in text and "u:pw@" not in text
    assert entry["settings"]["headers"]["Authorization"] == "[REDACTED]"
    assert entry["detail"]["api_key"] == "[REDACTED]"
    assert entry["detail"]["deep"][0][0][0]["token"] == "[REDACTED]"


def test_an_exception_object_bound_as_a_value_is_redacted(log_lines: io.StringIO) -> None:
    """A value the renderer would str() (an exception) is redacted as that string."""
    structlog.get_logger("t").warning("failed", error=RuntimeError(f"echo {SECRET}"))
    assert SECRET not in log_lines.getvalue()


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("cannot connect to http://alice:hunter2@proxy:8080/v1", "hunter2"),
        ("Bearer abc.def-ghi", "abc.def-ghi"),
        ("Incorrect API key provided: sk-proj-0123456789abcdef", "sk-proj-0123456789abcdef"),
        (f"repr form {SECRET!r}", SECRET),
    ],
)
def test_redact_text_removes_each_form(text: str, gone: str) -> None:
    """URL credentials, bearer tokens, sk- keys and registered secrets are replaced."""
    register_secret(SECRET)
    assert gone not in redact_text(text)


def test_short_secrets_are_not_registered() -> None:
    """A key under 8 characters would match everywhere: it is not redacted by value."""
    register_secret("k")
    assert redact_text("a kind key") == "a kind key"
