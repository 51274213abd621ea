"""Fault injection for `syncd serve`: make the server misbehave on purpose, for tests.

Off by default. Configured with one JSON object (``--faults``, ``SYNCD_SERVE_FAULTS``, or
``PUT /_syncd/faults`` at runtime); every key is optional::

    {
      "seed": 7,                      # makes the random draws repeatable (null: random)
      "error_rate": 0.2,              # share of requests answered with an injected error
      "error_statuses": [500, 503],   # drawn from uniformly (default [500])
      "retry_after": 0.5,             # seconds, sent as retry-after(-ms) with injected errors
      "latency_ms": 30,               # added to every matching request before it is handled
      "rate_limit": {"requests": 10, "per_seconds": 1, "retry_after": 1},
                                      # sliding window; beyond it: 429 + Retry-After
      "lost_answer_rate": 0.1,        # POSTs (files, uploads): carried out, then a 502
      "methods": ["POST"],            # only requests with these methods get faults
      "routes": ["create", "list"],   # only these routes (names from ``route_name``)
      "indexing": {                   # vector store files: how their indexing ends
        "seed": 3,                    # repeatable draws (default: the top-level seed)
        "failure_rate": 0.1,          # share of attached files whose indexing fails ...
        "failure_code": "server_error",   # ... with this last_error.code
        "stall_rate": 0.05,           # share that stays in_progress for ever
        "fail_names": ["*.bad.txt"],  # files (name or base name glob) that always fail
        "stall_names": ["slow/*"]     # files that always stall
      }
    }

``methods``/``routes`` do not apply to ``indexing``: it acts when a file is attached
(``syncd.server.vector_store_db``), whatever request did it, and its decisions stay
with the file.

The injector only decides; the gate in ``syncd.server.gate`` carries the decision out
and records it in the request statistics.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncd.errors import ConfigError

_KNOWN_KEYS = frozenset(
    {
        "seed",
        "error_rate",
        "error_statuses",
        "retry_after",
        "latency_ms",
        "rate_limit",
        "lost_answer_rate",
        "methods",
        "routes",
        "indexing",
    }
)
_INDEXING_KEYS = frozenset(
    {"seed", "failure_rate", "failure_code", "stall_rate", "fail_names", "stall_names"}
)
INDEXING_ERROR_CODES = ("server_error", "unsupported_file", "invalid_file")


@dataclass(frozen=True)
class IndexingFaults:
    """How attached files' indexing misbehaves; the default lets every file complete."""

    seed: int | None = None
    failure_rate: float = 0.0
    failure_code: str = "server_error"
    stall_rate: float = 0.0
    fail_names: tuple[str, ...] = ()
    stall_names: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "failure_rate": self.failure_rate,
            "failure_code": self.failure_code,
            "stall_rate": self.stall_rate,
            "fail_names": list(self.fail_names),
            "stall_names": list(self.stall_names),
        }


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` admitted per sliding window of ``per_seconds``."""

    requests: int
    per_seconds: float
    retry_after: float | None = None


@dataclass(frozen=True)
class FaultConfig:
    """The parsed fault configuration; the default injects nothing."""

    seed: int | None = None
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500,)
    retry_after: float | None = None
    latency_ms: float = 0.0
    rate_limit: RateLimit | None = None
    lost_answer_rate: float = 0.0
    methods: frozenset[str] | None = None
    routes: frozenset[str] | None = None
    indexing: IndexingFaults = field(default_factory=IndexingFaults)

    def to_json(self) -> dict[str, Any]:
        """The configuration as the JSON object it was parsed from (normalised)."""
        return {
            "seed": self.seed,
            "error_rate": self.error_rate,
            "error_statuses": list(self.error_statuses),
            "retry_after": self.retry_after,
            "latency_ms": self.latency_ms,
            "rate_limit": None
            if self.rate_limit is None
            else {
                "requests": self.rate_limit.requests,
                "per_seconds": self.rate_limit.per_seconds,
                "retry_after": self.rate_limit.retry_after,
            },
            "lost_answer_rate": self.lost_answer_rate,
            "methods": sorted(self.methods) if self.methods is not None else None,
            "routes": sorted(self.routes) if self.routes is not None else None,
            "indexing": self.indexing.to_json(),
        }


def _number(data: dict[str, Any], key: str, lo: float, hi: float, default: float) -> float:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(f"faults: {key!r} must be a number between {lo} and {hi}")
    return float(value)


def _optional_seconds(value: Any, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"faults: {key!r} must be a non-negative number of seconds")
    return float(value)


def _names(value: Any, key: str, upper: bool) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"faults: {key!r} must be a list of strings")
    return frozenset(v.upper() if upper else v for v in value)


def _seed(value: Any, key: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"faults: {key!r} must be an integer or null")
    return value if value is None else int(value)


def _globs(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"faults: {key!r} must be a list of glob strings")
    return tuple(value)


def parse_indexing(data: Any, default_seed: int | None) -> IndexingFaults:
    """The ``indexing`` part of a fault configuration (ConfigError naming a bad key)."""
    if data is None:
        return IndexingFaults(seed=default_seed)
    if not isinstance(data, dict):
        raise ConfigError("faults: 'indexing' must be an object")
    unknown = set(data) - _INDEXING_KEYS
    if unknown:
        raise ConfigError(f"faults: unknown indexing key(s) {', '.join(sorted(unknown))}")
    code = data.get("failure_code", "server_error")
    if code not in INDEXING_ERROR_CODES:
        raise ConfigError(
            f"faults: 'indexing.failure_code' must be one of {', '.join(INDEXING_ERROR_CODES)}"
        )
    return IndexingFaults(
        seed=_seed(data.get("seed", default_seed), "indexing.seed"),
        failure_rate=_number(data, "failure_rate", 0.0, 1.0, 0.0),
        failure_code=code,
        stall_rate=_number(data, "stall_rate", 0.0, 1.0, 0.0),
        fail_names=_globs(data.get("fail_names"), "indexing.fail_names"),
        stall_names=_globs(data.get("stall_names"), "indexing.stall_names"),
    )


def parse_faults(data: dict[str, Any]) -> FaultConfig:
    """Validate a fault configuration object; raises ConfigError naming the bad key."""
    if not isinstance(data, dict):
        raise ConfigError("faults: the configuration must be a JSON object")
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise ConfigError(f"faults: unknown key(s) {', '.join(sorted(unknown))}")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError("faults: 'seed' must be an integer or null")
    statuses = data.get("error_statuses", [500])
    if (
        not isinstance(statuses, list)
        or not statuses
        or not all(isinstance(s, int) and 400 <= s <= 599 for s in statuses)
    ):
        raise ConfigError("faults: 'error_statuses' must be a non-empty list of 4xx/5xx codes")
    rate_limit = None
    raw_limit = data.get("rate_limit")
    if raw_limit is not None:
        if not isinstance(raw_limit, dict):
            raise ConfigError("faults: 'rate_limit' must be an object")
        requests = raw_limit.get("requests")
        if isinstance(requests, bool) or not isinstance(requests, int) or requests < 0:
            raise ConfigError("faults: 'rate_limit.requests' must be a non-negative integer")
        per_seconds = _number(raw_limit, "per_seconds", 0.001, 86400.0, 1.0)
        rate_limit = RateLimit(
            requests=requests,
            per_seconds=per_seconds,
            retry_after=_optional_seconds(raw_limit.get("retry_after"), "rate_limit.retry_after"),
        )
    return FaultConfig(
        seed=seed,
        error_rate=_number(data, "error_rate", 0.0, 1.0, 0.0),
        error_statuses=tuple(statuses),
        retry_after=_optional_seconds(data.get("retry_after"), "retry_after"),
        latency_ms=_number(data, "latency_ms", 0.0, 600_000.0, 0.0),
        rate_limit=rate_limit,
        lost_answer_rate=_number(data, "lost_answer_rate", 0.0, 1.0, 0.0),
        methods=_names(data.get("methods"), "methods", upper=True),
        routes=_names(data.get("routes"), "routes", upper=False),
        indexing=parse_indexing(data.get("indexing"), seed),
    )


def load_faults(text: str | None) -> FaultConfig:
    """Parse ``--faults``/``SYNCD_SERVE_FAULTS``: inline JSON, or ``@path`` to a JSON file."""
    if text is None or not text.strip():
        return FaultConfig()
    source = "the fault configuration"
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"faults: cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"faults: {source} is not valid JSON: {exc}") from exc
    return parse_faults(data)


@dataclass(frozen=True)
class FaultDecision:
    """What to do to one request. At most one of the three kinds is set."""

    latency_s: float = 0.0
    rate_limited: bool = False
    error_status: int | None = None
    lose_answer: bool = False
    retry_after: float | None = None

    @property
    def kind(self) -> str | None:
        if self.rate_limited:
            return "rate_limit"
        if self.error_status is not None:
            return "error"
        if self.lose_answer:
            return "lost_answer"
        return None


NO_FAULT = FaultDecision()


@dataclass
class FaultInjector:
    """Draws fault decisions from a FaultConfig; safe to call from any thread."""

    config: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)  # noqa: S311 - test faults, not crypto
        self._admitted: deque[float] = deque()

    def replace(self, config: FaultConfig) -> None:
        """Swap in a new configuration; the random stream and rate window restart."""
        with self._lock:
            self.config = config
            self._rng = random.Random(config.seed)  # noqa: S311
            self._admitted.clear()

    def _applies(self, method: str, route: str) -> bool:
        cfg = self.config
        if cfg.methods is not None and method.upper() not in cfg.methods:
            return False
        return cfg.routes is None or route in cfg.routes

    def _rate_limit_wait(self, now: float) -> float | None:
        """Seconds until the window has room again, or None (and the request is counted)."""
        limit = self.config.rate_limit
        if limit is None:
            return None
        while self._admitted and self._admitted[0] <= now - limit.per_seconds:
            self._admitted.popleft()
        if len(self._admitted) < limit.requests:
            self._admitted.append(now)
            return None
        if limit.retry_after is not None:
            return limit.retry_after
        if not self._admitted:
            return limit.per_seconds
        return max(0.001, self._admitted[0] + limit.per_seconds - now)

    def decide(self, method: str, route: str, now: float | None = None) -> FaultDecision:
        """The faults for one request of ``method`` on ``route`` arriving at ``now``."""
        with self._lock:
            cfg = self.config
            if not self._applies(method, route):
                return NO_FAULT
            latency = cfg.latency_ms / 1000.0
            wait = self._rate_limit_wait(time.monotonic() if now is None else now)
            if wait is not None:
                return FaultDecision(latency_s=latency, rate_limited=True, retry_after=wait)
            if cfg.error_rate > 0 and self._rng.random() < cfg.error_rate:
                status = self._rng.choice(cfg.error_statuses)
                return FaultDecision(
                    latency_s=latency, error_status=status, retry_after=cfg.retry_after
                )
            lose = (
                method.upper() == "POST"
                and cfg.lost_answer_rate > 0
                and self._rng.random() < cfg.lost_answer_rate
            )
            return FaultDecision(latency_s=latency, lose_answer=lose)


def retry_after_headers(seconds: float | None) -> dict[str, str]:
    """Both forms: ``retry-after-ms`` (what the official SDK prefers) and whole seconds."""
    if seconds is None:
        return {}
    return {
        "retry-after-ms": str(max(0, round(seconds * 1000))),
        "retry-after": str(max(0, math.ceil(seconds))),
    }
