"""Metrics behind a small interface; Prometheus stays inside this module.

Components call hooks named after what happened (`envelope_accepted`,
`pipeline_batch_done`, ...). The registry is passed in, so tests and several
daemons in one process never share counters. Durations are in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from broker import __version__

CONTENT_TYPE = CONTENT_TYPE_LATEST
disable_created_metrics()  # *_created series double the output and nobody reads them
# Submit-to-mailbox latency and HTTP durations: the 100 ms bar sits mid-range.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class AxisLinkState:
    """The national-axis link as its hooks last reported it, for the web console (the
    link lives in an adapter the console's adapter may not import).

    breaker: 0 closed, 1 half-open, 2 open (docbroker_axis_breaker_state);
    last_ok_at: when the axis last took an envelope or gave one (epoch seconds);
    last_failure, last_failure_at: the last failed call (`operation: code`);
    upstream_queue: records waiting to be sent (None before the sender reported)."""

    breaker: int = 0
    last_ok_at: float | None = None
    last_failure: str = ""
    last_failure_at: float | None = None
    upstream_queue: int | None = None


class Metrics:
    """Every metric docbroker exports, registered in the given registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.axis = AxisLinkState()
        r = self.registry
        self._build = Gauge(
            "docbroker_build_info",
            "Version and backend of this process",
            ["version", "backend", "instance"],
            registry=r,
        )
        self._ready = Gauge(
            "docbroker_ready",
            "1 when the /readyz checks pass (checked at each /readyz and each scrape)",
            registry=r,
        )
        self._http = Counter(
            "docbroker_http_requests_total",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=r,
        )
        self._http_seconds = Histogram(
            "docbroker_http_request_duration_seconds",
            "HTTP request duration",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._limited = Counter(
            "docbroker_http_limited_total",
            "HTTP requests refused by a fair limit: agency-requests, agency-long-polls (429), "
            "bytes-in-flight (503), rate (429)",
            ["reason"],
            registry=r,
        )
        for reason in ("agency-requests", "agency-long-polls", "bytes-in-flight", "rate"):
            self._limited.labels(reason)  # 0 from the start: rate() and alerts see them
        self._accepted = Counter(
            "docbroker_envelopes_accepted_total",
            "Envelopes durably appended to inbound",
            registry=r,
        )
        self._accepted_bytes = Counter(
            "docbroker_envelopes_accepted_bytes_total",
            "Bytes of envelopes appended to inbound",
            registry=r,
        )
        self._refused = Counter(
            "docbroker_envelopes_refused_total",
            "Envelopes refused, by stage and problem code",
            ["stage", "code"],
            registry=r,
        )
        self._warnings = Counter(
            "docbroker_envelope_warnings_total",
            "Envelopes the pipeline accepted with a warning, by warning code (an envelope "
            "counts once per code)",
            ["code"],
            registry=r,
        )
        self._records = Counter(
            "docbroker_pipeline_records_total",
            "Inbound records handled by the pipeline, by outcome",
            ["outcome"],
            registry=r,
        )
        self._batch_seconds = Histogram(
            "docbroker_pipeline_batch_duration_seconds",
            "Time to check, route and commit one batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._commit_failures = Counter(
            "docbroker_pipeline_commit_failures_total",
            "Pipeline transactions that did not commit",
            ["reason"],
            registry=r,
        )
        self._pool_rebuilds = Counter(
            "docbroker_pipeline_pool_rebuilds_total",
            "Pipeline worker pools rebuilt after a worker process died",
            registry=r,
        )
        self._deliveries = Counter(
            "docbroker_mailbox_deliveries_total", "Envelopes put into agency mailboxes", registry=r
        )
        self._latency = Histogram(
            "docbroker_submit_to_mailbox_seconds",
            "From the durable accept to the committed mailbox record",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._append_seconds = Histogram(
            "docbroker_log_append_duration_seconds",
            "Durable append of a submission",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._acks = Counter(
            "docbroker_mailbox_acks_total", "Acknowledgements recorded by recipients", registry=r
        )
        self._pending = Gauge(
            "docbroker_mailbox_pending", "Envelopes in mailboxes not yet acknowledged", registry=r
        )
        self._view_lag = Gauge(
            "docbroker_mailbox_view_lag_records",
            "Records the mailbox view has not applied yet",
            registry=r,
        )
        self._documents_lag = Gauge(
            "docbroker_documents_view_lag_records",
            "Audit events the documents view (delivery state, trace) has not applied yet",
            registry=r,
        )
        self._access_refused = Counter(
            "docbroker_access_refused_total",
            "Requests refused for their credential, rights or rate, by surface and problem code",
            ["surface", "code"],
            registry=r,
        )
        self._upstream_queue = Gauge(
            "docbroker_upstream_queue_records",
            "Upstream records the national axis has not confirmed yet (partitions this "
            "instance sends)",
            registry=r,
        )
        self._upstream_latency = Histogram(
            "docbroker_upstream_delivery_seconds",
            "From routing upstream to the national axis's confirmation",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
            registry=r,
        )
        self._upstream_sent = Counter(
            "docbroker_upstream_envelopes_total",
            "Upstream envelopes by outcome: sent, already-there (a resend), dead-lettered",
            ["outcome"],
            registry=r,
        )
        self._axis_failures = Counter(
            "docbroker_axis_failures_total",
            "Failed requests to the national axis, by operation and axis error code",
            ["operation", "code"],
            registry=r,
        )
        self._breaker = Gauge(
            "docbroker_axis_breaker_state",
            "The national axis circuit breaker: 0 closed, 1 half-open, 2 open",
            registry=r,
        )
        self._axis_received = Counter(
            "docbroker_axis_received_total",
            "Packages taken in from the national axis, by message type and outcome",
            ["messagetype", "outcome"],
            registry=r,
        )

        self._cert_expiry = Gauge(
            "docbroker_certificate_expiry_seconds",
            "Seconds until a certificate docbroker depends on expires",
            ["role", "subject"],
            registry=r,
        )
        self._crl_next_update = Gauge(
            "docbroker_crl_next_update_seconds",
            "Seconds until the nextUpdate of the CRL in force from a file (negative: out of "
            "date, its certificates' revocation unchecked)",
            ["file"],
            registry=r,
        )
        self._crl_read = Gauge(
            "docbroker_crl_read_timestamp_seconds",
            "When the CRL in force from a file was read (epoch seconds)",
            ["file"],
            registry=r,
        )
        self._crl_failing = Gauge(
            "docbroker_crl_file_failing",
            "1 while a CRL file cannot be read or is not a valid CRL (the one read before is kept)",
            ["file"],
            registry=r,
        )
        self._sdk_requests = Counter(
            "docbroker_sdk_requests_total",
            "SDK-surface (/vdxp) requests by operation, transport (tls|plain) and outcome",
            ["operation", "transport", "outcome"],
            registry=r,
        )
        self._sdk_plain = Gauge(
            "docbroker_sdk_plain_http_systems",
            "SDK systems an administrator allowed to call over plain HTTP",
            registry=r,
        )
        self._plain_listener = Gauge(
            "docbroker_http_plain_listener",
            "1 for a listener serving plain HTTP because the configuration said so: api "
            "(http.allow_plain, beyond loopback), sdk (http.sdk_plain_host); else 0",
            ["listener"],
            registry=r,
        )
        self._signatures = Counter(
            "docbroker_sender_signatures_total",
            "Sender signatures checked, by outcome",
            ["outcome", "policy"],
            registry=r,
        )
        self._log_bytes = Gauge(
            "docbroker_log_bytes",
            "Bytes a topic holds (key + value + headers; embedded backend), measured each minute",
            ["topic"],
            registry=r,
        )
        self._log_records = Gauge(
            "docbroker_log_records",
            "Records a topic holds (embedded) or has had written (Kafka: end offsets)",
            ["topic"],
            registry=r,
        )
        self._log_file_bytes = Gauge(
            "docbroker_log_file_bytes",
            "The embedded log's file with its -wal and -shm (pages, indexes, free space)",
            registry=r,
        )
        self._read_model_bytes = Gauge(
            "docbroker_read_model_bytes",
            "A read model's SQLite file with its -wal and -shm",
            ["view"],
            registry=r,
        )
        self._data_free = Gauge(
            "docbroker_data_free_bytes",
            "Free space of the data directory's filesystem (for docbroker's user), measured "
            "with the sizes",
            registry=r,
        )
        self._data_capacity = Gauge(
            "docbroker_data_capacity_bytes",
            "Size of the data directory's filesystem, measured with the sizes",
            registry=r,
        )
        self._pruned = Counter(
            "docbroker_log_pruned_records_total",
            "Records removed from the log by the retention rules (offsets passed), by topic",
            ["topic"],
            registry=r,
        )
        self._prune_seconds = Histogram(
            "docbroker_log_prune_seconds",
            "Duration of one prune of the log",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600),
            registry=r,
        )
        self._oldest_pending = Gauge(
            "docbroker_mailbox_oldest_unacknowledged_seconds",
            "Age of the oldest unacknowledged mailbox entry (0 when there is none)",
            registry=r,
        )
        self._pending_by_agency = Gauge(
            "docbroker_mailbox_pending_by_agency",
            "Unacknowledged mailbox entries by recipient agency (the directory's agencies; "
            'agency="other": recipients it does not name)',
            ["agency"],
            registry=r,
        )
        self._oldest_by_agency = Gauge(
            "docbroker_mailbox_oldest_unacknowledged_by_agency_seconds",
            "Age of an agency's oldest unacknowledged mailbox entry (0 when there is none)",
            ["agency"],
            registry=r,
        )
        self._backlog_labels: set[str] = set()

    # -- process
    def started(self, *, backend: str, instance: str) -> None:
        self._build.labels(__version__, backend, instance).set(1)

    def readiness(self, ready: bool) -> None:
        self._ready.set(1 if ready else 0)

    def certificate_expiry(self, role: str, subject: str, seconds: float) -> None:
        self._cert_expiry.labels(role, subject).set(seconds)

    def crl_file(
        self,
        file: str,
        *,
        next_update_seconds: float | None,
        read_at: float,
        failing: bool,
    ) -> None:
        if next_update_seconds is not None:
            self._crl_next_update.labels(file).set(next_update_seconds)
        self._crl_read.labels(file).set(read_at)
        self._crl_failing.labels(file).set(1 if failing else 0)

    def sender_signature(self, outcome: str, policy: str) -> None:
        self._signatures.labels(outcome, policy).inc()

    # -- HTTP
    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        self._http.labels(route, method, str(status)).inc()
        self._http_seconds.labels(route).observe(seconds)

    def http_limited(self, reason: str) -> None:
        self._limited.labels(reason).inc()

    # -- accept
    def envelope_accepted(self, size: int, append_seconds: float) -> None:
        self._accepted.inc()
        self._accepted_bytes.inc(size)
        self._append_seconds.observe(append_seconds)

    def envelope_refused(self, stage: str, code: str) -> None:
        self._refused.labels(stage, code).inc()

    # -- pipeline
    def pipeline_batch_done(self, seconds: float, outcomes: Mapping[str, int]) -> None:
        self._batch_seconds.observe(seconds)
        for outcome, n in outcomes.items():
            self._records.labels(outcome).inc(n)

    def envelope_warned(self, code: str) -> None:
        self._warnings.labels(code).inc()

    def pipeline_commit_failed(self, reason: str) -> None:
        self._commit_failures.labels(reason).inc()

    def pipeline_pool_rebuilt(self) -> None:
        self._pool_rebuilds.inc()

    def delivered(self, latency_seconds: float) -> None:
        self._deliveries.inc()
        self._latency.observe(max(0.0, latency_seconds))

    # -- mailbox view
    def acknowledged(self) -> None:
        self._acks.inc()

    def mailbox_state(self, pending: int, lag: int) -> None:
        self._pending.set(pending)
        self._view_lag.set(lag)

    def documents_view_lag(self, records: int) -> None:
        self._documents_lag.set(records)

    # -- access
    def access_refused(self, surface: str, code: str) -> None:
        self._access_refused.labels(surface, code).inc()

    # -- the national axis
    def upstream_queue(self, records: int) -> None:
        self._upstream_queue.set(records)
        self.axis.upstream_queue = records

    def upstream_done(self, outcome: str, seconds: float | None = None) -> None:
        self._upstream_sent.labels(outcome).inc()
        if outcome in ("sent", "already-there"):
            self.axis.last_ok_at = time.time()
        if seconds is not None:
            self._upstream_latency.observe(max(0.0, seconds))

    def axis_failed(self, operation: str, code: str) -> None:
        self._axis_failures.labels(operation, code).inc()
        self.axis.last_failure, self.axis.last_failure_at = f"{operation}: {code}", time.time()

    def axis_breaker(self, state: int) -> None:
        self._breaker.set(state)
        self.axis.breaker = int(state)

    def axis_received(self, messagetype: str, outcome: str) -> None:
        self._axis_received.labels(messagetype, outcome).inc()
        self.axis.last_ok_at = time.time()

    def sdk_request(self, operation: str, *, secure: bool, outcome: str) -> None:
        transport = "tls" if secure else "plain"
        self._sdk_requests.labels(operation, transport, outcome).inc()

    def sdk_plain_http_systems(self, count: int) -> None:
        self._sdk_plain.set(count)

    def http_plain_listener(self, listener: str, plain: bool) -> None:
        self._plain_listener.labels(listener).set(int(plain))

    # -- growth
    def topic_size(self, topic: str, records: int, size: int | None) -> None:
        self._log_records.labels(topic).set(records)
        if size is not None:
            self._log_bytes.labels(topic).set(size)

    def log_file_size(self, size: int) -> None:
        self._log_file_bytes.set(size)

    def read_model_size(self, view: str, size: int) -> None:
        self._read_model_bytes.labels(view).set(size)

    def data_space(self, free: int, capacity: int) -> None:
        self._data_free.set(free)
        self._data_capacity.set(capacity)

    def log_pruned(self, removed: Mapping[str, int], seconds: float) -> None:
        for topic, count in removed.items():
            self._pruned.labels(topic).inc(count)
        self._prune_seconds.observe(seconds)

    def oldest_unacknowledged(self, seconds: float) -> None:
        self._oldest_pending.set(seconds)

    def mailbox_backlog(self, by_agency: Mapping[str, tuple[int, float]]) -> None:
        """(pending, oldest seconds) by agency; a label not given any more (an agency
        removed from the directory) is removed, not left at its last value."""
        for agency in self._backlog_labels - by_agency.keys():
            self._pending_by_agency.remove(agency)
            self._oldest_by_agency.remove(agency)
        for agency, (pending, oldest) in by_agency.items():
            self._pending_by_agency.labels(agency).set(pending)
            self._oldest_by_agency.labels(agency).set(oldest)
        self._backlog_labels = set(by_agency)

    def render(self) -> bytes:
        return generate_latest(self.registry)
