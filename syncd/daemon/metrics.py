"""``syncd run --metrics ADDRESS:PORT``: the daemon's counters in the Prometheus text
format, served by ``prometheus_client`` on a thread of its own.

Only ``syncd run`` imports this module (``prometheus_client`` is not loaded otherwise).
``DaemonMetrics`` is both observers: the remote layer's (``RequestObserver``: requests by
endpoint and status, retries, 429s, time held at the shared gate and the pacer) and the daemon's
(``DaemonObserver``: actions and passes per folder); the per-mirror gauges (mirrored,
pending, failed, queue depth, delayed and refused deletes) are read from the mirrors'
status at scrape time, so they are never stale. Its own registry, not the library's
global one: nothing else leaks into /metrics.

Names carry the ``syncd_`` prefix and their unit (``_bytes_total``, ``_seconds``). Label
values are bounded: ``folder`` is a configured folder, ``endpoint`` a route name
(``syncd.remote.observer.endpoint_name``), ``status`` an HTTP code or ``error``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from syncd.daemon.status import MirrorStatus
from syncd.errors import ConfigError
from syncd.sync.plan import ActionKind
from syncd.sync.result import Outcome, OutcomeStatus, PassResult

PASS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120, 600)


class _MirrorGauges(Collector):
    """The per-mirror gauges, read from the mirrors' status when scraped."""

    def __init__(self, statuses: Callable[[], Sequence[MirrorStatus]]) -> None:
        self.statuses = statuses

    def collect(self) -> Iterable[Metric]:
        families = {
            "mirrored": GaugeMetricFamily(
                "syncd_files_mirrored", "Files whose remote copy is up to date", labels=["folder"]
            ),
            "pending": GaugeMetricFamily(
                "syncd_files_pending",
                "Files waiting to be mirrored (queued, retrying, unfinished)",
                labels=["folder"],
            ),
            "failed": GaugeMetricFamily(
                "syncd_files_failed",
                "Files that failed for good (retried once they change)",
                labels=["folder"],
            ),
            "queued": GaugeMetricFamily(
                "syncd_queue_depth", "Paths waiting to be looked at again", labels=["folder"]
            ),
            "delayed": GaugeMetricFamily(
                "syncd_deletes_delayed", "Deletes waiting out delete_delay", labels=["folder"]
            ),
            "refused": GaugeMetricFamily(
                "syncd_deletes_refused",
                "1 while the mass-delete guard holds deletes back, waiting for an approval",
                labels=["folder"],
            ),
            "paused": GaugeMetricFamily(
                "syncd_mirror_paused",
                "1 while the mirror is paused (folder gone, key rejected, remote unusable)",
                labels=["folder"],
            ),
        }
        for status in self.statuses():
            folder = [status.folder]
            families["mirrored"].add_metric(folder, status.mirrored)
            families["pending"].add_metric(folder, status.pending)
            families["failed"].add_metric(folder, status.failed)
            families["queued"].add_metric(folder, status.queued)
            families["delayed"].add_metric(folder, status.delayed)
            families["refused"].add_metric(folder, 1 if status.refusal else 0)
            families["paused"].add_metric(folder, 1 if status.paused else 0)
        return list(families.values())


class DaemonMetrics:
    """The daemon's metrics (module docstring). Thread-safe: the client's metrics are."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._statuses: Callable[[], Sequence[MirrorStatus]] = list
        self.registry.register(_MirrorGauges(lambda: self._statuses()))
        r = self.registry
        self.uploaded_files = Counter(
            "syncd_files_uploaded", "Files uploaded (new or replaced)", ["folder"], registry=r
        )
        self.uploaded_bytes = Counter(
            "syncd_uploaded_bytes", "Bytes of the files uploaded", ["folder"], registry=r
        )
        self.deleted_files = Counter(
            "syncd_files_deleted", "Remote copies of deleted files deleted", ["folder"], registry=r
        )
        self.deleted_bytes = Counter(
            "syncd_deleted_bytes", "Bytes of the remote copies deleted", ["folder"], registry=r
        )
        self.failed_actions = Counter(
            "syncd_actions_failed", "Uploads and deletes that failed", ["folder"], registry=r
        )
        self.passes = Counter(
            "syncd_passes", "Passes by kind and result", ["folder", "kind", "result"], registry=r
        )
        self.pass_seconds = Histogram(
            "syncd_pass_duration_seconds",
            "How long passes took",
            ["folder", "kind"],
            buckets=PASS_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "syncd_last_successful_pass_timestamp_seconds",
            "When a pass last ended with the remote equal to the folder (unix time)",
            ["folder"],
            registry=r,
        )
        self.requests = Counter(
            "syncd_requests",
            "Requests to the remote by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "syncd_request_duration_seconds",
            "How long requests to the remote took",
            ["endpoint"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "syncd_retries",
            "Requests tried again after a retryable error",
            ["endpoint"],
            registry=r,
        )
        self._rate_limited = Counter(
            "syncd_rate_limited", "Answers 429 (rate limited)", ["endpoint"], registry=r
        )
        self.pacing = Counter(
            "syncd_pacing_delay_seconds",
            "Time requests waited at the shared gate (a 429's Retry-After) and the upload pacer",
            registry=r,
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def watch(self, statuses: Callable[[], Sequence[MirrorStatus]]) -> None:
        """Where the per-mirror gauges come from (the daemon's mirrors)."""
        self._statuses = statuses

    # -- serving ---------------------------------------------------------------------

    def serve(self, host: str, port: int, *, where: str) -> None:
        """Serve /metrics on ``host:port``; ConfigError (one line) if it cannot bind."""
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(f"{where}: cannot serve metrics on {host}:{port}: {reason}") from None

    @property
    def port(self) -> int | None:
        return None if self._server is None else int(self._server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- the remote layer (RequestObserver) --------------------------------------------

    def request_finished(self, endpoint: str, status: str, seconds: float) -> None:
        self.requests.labels(endpoint, status).inc()
        self.request_seconds.labels(endpoint).observe(seconds)

    def retried(self, endpoint: str) -> None:
        self.retries.labels(endpoint).inc()

    def rate_limited(self, endpoint: str) -> None:
        self._rate_limited.labels(endpoint).inc()

    def paced(self, seconds: float) -> None:
        self.pacing.inc(seconds)

    # -- the daemon (DaemonObserver) ---------------------------------------------------

    def action_finished(self, folder: str, outcome: Outcome) -> None:
        kind = outcome.action.kind
        if outcome.status is OutcomeStatus.FAILED:
            self.failed_actions.labels(folder).inc()
        elif outcome.status is OutcomeStatus.DONE:
            if kind in (ActionKind.UPLOAD, ActionKind.REPLACE):
                self.uploaded_files.labels(folder).inc()
                self.uploaded_bytes.labels(folder).inc(outcome.bytes)
            elif kind is ActionKind.DELETE:
                self.deleted_files.labels(folder).inc()
                row = outcome.action.row  # the remote copy's size, as the ledger knew it
                if row is not None:
                    self.deleted_bytes.labels(folder).inc(row.remote_bytes or row.size or 0)

    def pass_finished(self, folder: str, kind: str, result: PassResult) -> None:
        self.passes.labels(folder, kind, result.verdict).inc()
        self.pass_seconds.labels(folder, kind).observe(
            max(0.0, result.finished_at - result.started_at)
        )
        if result.verdict == "ok":
            self.last_success.labels(folder).set(result.finished_at)
