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

import contextlib
import errno
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, MutableMapping
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


class _DroppedLines:
    """How many output lines the process could not write (every stream, every thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self, lines: int) -> None:
        with self._lock:
            self.count += lines


_DROPPED = _DroppedLines()
# A write failing with one of these means the reader is gone for good (a closed pipe, a
# hung-up terminal, a dropped connection): nothing written there will ever be read.
_READER_GONE = frozenset(
    {errno.EPIPE, errno.EIO, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN}
)


def dropped_lines() -> int:
    """Output lines (log lines, messages) this process failed to write so far."""
    return _DROPPED.count


class SafeStream:
    """A text stream that never raises on ``write`` or ``flush``: output must never stop
    the daemon, its signal handling or a command's clean-up.

    A failed write is dropped and counted (``dropped_lines``). When the reader is gone
    for good (``EPIPE``, ``EIO``: a closed pipe, ``| head``, a dropped ssh session) the
    descriptor is pointed at ``/dev/null``: what the wrapped stream still buffers, and
    Python's flush at exit, then go nowhere instead of failing again (no "Exception
    ignored ... BrokenPipeError" at shutdown). Everything else is the wrapped stream's.
    """

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner
        self.broken = False

    def write(self, text: str) -> int:
        if self.broken:
            _DROPPED.add(max(1, text.count("\n")))
            return len(text)
        try:
            return self.inner.write(text)
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            self._failed(exc, max(1, text.count("\n")))
            return len(text)

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self.inner.flush()
        except (OSError, ValueError) as exc:
            self._failed(exc, 1)

    def isatty(self) -> bool:
        return _isatty(self.inner)

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, errors, buffer, ...
        return getattr(self.inner, name)

    def _failed(self, exc: Exception, lines: int) -> None:
        _DROPPED.add(lines)
        if isinstance(exc, OSError) and exc.errno in _READER_GONE:
            self.broken = True
            with contextlib.suppress(OSError, ValueError, AttributeError):
                devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.dup2(devnull, self.inner.fileno())
                finally:
                    os.close(devnull)


def protect_standard_streams() -> None:
    """Put ``sys.stdout`` and ``sys.stderr`` behind a :class:`SafeStream` (idempotent):
    every ``print``, log line, progress bar and traceback of the process goes through it."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, SafeStream):
            setattr(sys, name, SafeStream(stream))


class LineSink:
    """Where log lines go: one stream, one line per call, and never an exception.

    A log line must never stop the daemon: when stderr's reader is gone (a closed pipe,
    a dropped ssh session, journald restarting) the write fails, and the line is
    dropped and counted (``dropped_lines``) instead of raising into whoever logged it --
    the signal thread included. ``stream`` is called for each line, so that a progress
    display redirecting ``sys.stderr`` prints the lines above itself. ``name`` is the
    logger's name, which ``add_logger_name`` puts into every line.
    """

    def __init__(self, stream: Callable[[], TextIO], name: str, lock: threading.Lock) -> None:
        self._stream = stream
        self.name = name
        self._lock = lock

    def msg(self, message: str) -> None:
        try:
            with self._lock:
                stream = self._stream()
                stream.write(message + "\n")
                stream.flush()
        except (OSError, ValueError, AttributeError):  # EPIPE, EIO, ENOSPC; closed; None
            _DROPPED.add(1)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def add_logger_name(
    logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Processor: the module that logged (``"logger": "syncd.sync.engine"``)."""
    name = getattr(logger, "name", None)
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


_DEMOTED: set[str] = set()


def demote_to_debug(prefix: str) -> None:
    """From now on, info lines of the loggers under ``prefix`` (``"syncd.server"``) are
    debug lines, shown only with ``--verbose``; warnings and errors stay as they are.

    ``--local`` asks this for its embedded server, whose line per request would bury
    the command's own output (a progress bar, the daemon's per-file lines).
    """
    _DEMOTED.add(prefix)


def _demoted(verbose: bool) -> Callable[[Any, str, MutableMapping[str, Any]], Any]:
    def processor(
        _logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if method in ("debug", "info") and _DEMOTED:
            name = str(event_dict.get("logger", ""))
            if any(name == p or name.startswith(p + ".") for p in _DEMOTED):
                if not verbose:
                    raise structlog.DropEvent
                event_dict["level"] = "debug"
        return event_dict

    return processor


def configure_logging(fmt: str = "auto", verbose: bool = False, stream: Any = None) -> None:
    """Logs go to stderr so that stdout stays for command output (tables, --json).

    Without ``stream``, each line goes to whatever ``sys.stderr`` is when it is written.
    """
    out = stream if stream is not None else sys.stderr

    def current() -> TextIO:
        return stream if stream is not None else sys.stderr

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
        return LineSink(current, str(args[0]) if args else "syncd", lock)

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_logger_name,
            structlog.processors.add_log_level,
            _demoted(verbose),
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
