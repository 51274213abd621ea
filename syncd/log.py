"""structlog set-up: JSON lines for journald, readable lines on a terminal; secrets redacted.

Log calls bind ``path``, ``action``, ``file_id``, ``attempt``, ``bytes``, ``duration``.
Tests assert on them with ``structlog.testing.capture_logs()``.

Redaction is the last line of defence (the transport scrubs what the HTTP stack says
before it becomes an error): ``redact_secrets`` runs after exceptions are formatted, so
a traceback is redacted too, and walks nested dicts and lists. It replaces every value
under a secret-sounding key, every registered secret (``register_secret``: the API key
in use, once it is at least 8 characters; a shorter one would match everywhere), what
looks like an OpenAI key or a bearer token, and the ``user:password@`` of a URL.
``redact_text`` does the same to one string, for the lines the CLI prints and the errors
the ledger keeps.
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
# An OpenAI-style key, a bearer token, or the credentials of a URL anywhere in a value.
_SECRET_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+\S+)")
_URL_CREDENTIALS = re.compile(r"(?<=://)(?!\*\*\*@)[^/\s@]+@")  # ***@: masked already
MIN_REGISTERED_SECRET = 8
_MAX_DEPTH = 16  # nested values deeper than this are replaced whole
_secrets: set[str] = set()


def register_secret(secret: str) -> None:
    """Redact ``secret`` (and its ``repr`` form) wherever it appears from now on."""
    if len(secret) >= MIN_REGISTERED_SECRET:
        _secrets.add(secret)
        _secrets.add(repr(secret)[1:-1])


def redact_text(text: str) -> str:
    """``text`` without registered secrets, key-like strings or URL credentials."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "[REDACTED]")
    text = _SECRET_PATTERN.sub("[REDACTED]", text)
    return _URL_CREDENTIALS.sub("[REDACTED]@", text)


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth >= _MAX_DEPTH and isinstance(value, dict | list | tuple | set | frozenset):
        return "[REDACTED: nested too deeply]"
    if isinstance(value, dict):
        return {
            k: "[REDACTED]"
            if isinstance(k, str) and k.lower() in _SECRET_KEYS
            else _redact_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(_redact_value(v, depth + 1) for v in value)
    if isinstance(value, bytes | bytearray):
        return _redact_value(bytes(value).decode("utf-8", "replace"), depth)
    if value is None or isinstance(value, int | float):
        return value
    text = str(value)  # an exception, a path, ...: what the renderer would print
    redacted = redact_text(text)
    return value if redacted == text else redacted


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Processor: no API key ever reaches a log line, whatever a caller bound, nested
    or in a formatted traceback (it runs after ``format_exc_info``)."""
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
            structlog.processors.format_exc_info,
            redact_secrets,  # after the traceback is text, so that it is redacted too
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
