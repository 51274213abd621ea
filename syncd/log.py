"""structlog set-up: JSON lines for journald, readable lines on a terminal; secrets redacted.

Log calls bind ``path``, ``action``, ``file_id``, ``attempt``, ``bytes``, ``duration``.
Tests assert on them with ``structlog.testing.capture_logs()``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRET_KEYS = frozenset({"api_key", "authorization", "api-key", "key", "token", "password"})
# An OpenAI-style key or a bearer token anywhere in a value.
_SECRET_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+\S+)")


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET_PATTERN.sub("[REDACTED]", value)
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Processor: no API key ever reaches a log line, whatever a caller bound."""
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[REDACTED]"
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


class LineSink:
    """Where log lines go: one stream, one line per call, and never an exception.

    A log line must never stop the daemon: when stderr's reader is gone (a closed pipe,
    a dropped ssh session, journald restarting) the write fails, and the line is
    dropped and counted (``dropped``) instead of raising into whoever logged it -- the
    signal thread included. ``name`` is the logger's name, which ``add_logger_name``
    puts into every line.
    """

    dropped = 0  # lines lost by every sink of the process (a plain int: good enough)

    def __init__(self, stream: TextIO, name: str, lock: threading.Lock) -> None:
        self._stream = stream
        self.name = name
        self._lock = lock

    def msg(self, message: str) -> None:
        try:
            with self._lock:
                self._stream.write(message + "\n")
                self._stream.flush()
        except (OSError, ValueError):  # EPIPE, EIO, ENOSPC; ValueError: stream closed
            LineSink.dropped += 1

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def add_logger_name(
    logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Processor: the module that logged (``"logger": "syncd.sync.engine"``)."""
    name = getattr(logger, "name", None)
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


def configure_logging(fmt: str = "auto", verbose: bool = False, stream: Any = None) -> None:
    """Logs go to stderr so that stdout stays for command output (tables, --json)."""
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "console" if _isatty(out) and not os.environ.get("JOURNAL_STREAM") else "json"
    renderer: Any
    if fmt == "json":
        # UTF-8 as it is: a path like résumé.txt stays readable in the journal.
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(out))
    level = logging.DEBUG if verbose else logging.INFO
    lock = threading.Lock()

    def sink(*args: Any) -> LineSink:
        return LineSink(out, str(args[0]) if args else "syncd", lock)

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=sink,
        cache_logger_on_first_use=False,
    )


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (OSError, ValueError):
        return False
