"""What the remote layer reports about its requests, for metrics: a small interface.

``Transport`` calls a ``RequestObserver`` (default: ``NullObserver``, which does nothing)
for every request sent, every retry, every 429 and every wait at the ``RetryGate``, so
that ``syncd.daemon.metrics`` can count them without the remote layer importing Prometheus.
Endpoints are named by route (``endpoint_name``), never by raw path: a file id in a
label would make the number of series grow without bound. Calls come from the worker
threads; an implementation must be quick and thread-safe.
"""

from __future__ import annotations

import re
from typing import Protocol


class RequestObserver(Protocol):
    def request_finished(self, endpoint: str, status: str, seconds: float) -> None:
        """One attempt ended: ``status`` is the HTTP code (``"200"``) or ``"error"``
        (no answer: connection refused, reset, timeout)."""

    def retried(self, endpoint: str) -> None:
        """A failed attempt is about to be tried again."""

    def rate_limited(self, endpoint: str) -> None:
        """The server answered 429."""

    def paced(self, seconds: float) -> None:
        """A request waited this long at the shared gate (a 429's Retry-After)."""


class NullObserver:
    def request_finished(self, endpoint: str, status: str, seconds: float) -> None:
        pass

    def retried(self, endpoint: str) -> None:
        pass

    def rate_limited(self, endpoint: str) -> None:
        pass

    def paced(self, seconds: float) -> None:
        pass


_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), name)
    for method, pattern, name in (
        ("POST", r".*/files", "create"),
        ("GET", r".*/files", "list"),
        ("GET", r".*/files/[^/]+", "retrieve"),
        ("GET", r".*/files/[^/]+/content", "content"),
        ("DELETE", r".*/files/[^/]+", "delete"),
        ("POST", r".*/uploads", "upload_create"),
        ("POST", r".*/uploads/[^/]+/parts", "upload_part"),
        ("POST", r".*/uploads/[^/]+/complete", "upload_complete"),
        ("POST", r".*/uploads/[^/]+/cancel", "upload_cancel"),
    )
)


def endpoint_name(method: str, path: str) -> str:
    """The route a request is for (``create``, ``list``, ``upload_part``...), or
    ``other``: the names ``syncd serve`` uses for its rate limits."""
    for route_method, pattern, name in _ROUTES:
        if method == route_method and pattern.fullmatch(path):
            return name
    return "other"
