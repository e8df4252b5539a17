"""The upstream sender: what the pipeline routed to `upstream` goes to the national axis.

A member of the consumer group `<prefix>axis-sender` on `upstream`; partitions
work concurrently, each in order. For each record: sendEdoc, then commit the
record's offset together with its receipts (`sent-upstream` per recipient), so an
offset is committed only after the axis confirmed. A crash in between sends it
again, and the axis's "already exists" counts as delivered.

Refusals by the axis are retried with exponential backoff and jitter up to
`national_axis.retry_attempts`; then the envelope is dead-lettered in `rejected`
with the axis's error and an `upstream-failed` receipt, from which the pipeline
records the refusal and sends the status 02 to a local sender. When the axis is
unavailable, the circuit breaker opens and sending waits without spending any
envelope's budget (nothing is lost; `docbroker_upstream_queue_records` grows).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Sequence

import structlog

from adapters.national_axis.client import AxisClient
from adapters.national_axis.protocol import AxisError, CircuitBreaker, backoff_delay
from broker.clock import now_ms
from broker.config import NationalAxisSettings
from broker.core.errors import Fenced
from broker.core.logrecords import NewRecord, Record, TopicPartition
from broker.core.problems import Problem
from broker.core.receipts import Receipt, ReceiptKind
from broker.core.records import H, make_headers
from broker.core.topics import Topics
from broker.log.interface import DurableLog, GroupConsumer
from broker.metrics import Metrics
from broker.pipeline.intake import problems_json
from broker.pipeline.partitioned import Claim, PartitionWorkers

log = structlog.get_logger(__name__)


class UpstreamSender(PartitionWorkers):
    name = "axis-sender"

    def __init__(
        self,
        log_: DurableLog,
        topics: Topics,
        client: AxisClient,
        settings: NationalAxisSettings,
        metrics: Metrics,
        *,
        group: str,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(batch_size=16, poll_timeout=0.5, queue_limit=256)
        self.log_ = log_
        self.topics = topics
        self.client = client
        self.settings = settings
        self.metrics = metrics
        self.group = group
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._consumer: GroupConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._unconfirmed: dict[TopicPartition, int] = {}  # first offset not yet committed
        self.running = False

    async def start(self) -> None:
        self._consumer = self.log_.group_consumer(self.group, [self.topics.upstream])
        await self._consumer.start()
        self._tasks = [
            asyncio.create_task(self._run(self._consumer), name="axis-sender"),
            asyncio.create_task(self._measure_queue(), name="axis-sender-queue"),
        ]
        self.running = True
        log.info("upstream sender started", axis=self.client.base_url)

    async def stop(self) -> None:
        """Finish the request in hand (its commit too), then leave the group."""
        self._stopping.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._consumer is not None:
            await self._consumer.close()
        self.running = False

    def _released(self, tp: TopicPartition) -> None:
        self._unconfirmed.pop(tp, None)

    async def _handle_batch(self, claim: Claim, records: Sequence[Record]) -> bool:
        tp = claim.tp
        self._unconfirmed.setdefault(tp, records[0].offset)
        for record in records:
            if not claim.current:  # read again since polled: not sent twice
                return False
            outputs = await self._deliver(record)
            if outputs is None:  # stopping: not confirmed, read again later
                return False
            try:
                await claim.commit(record.offset + 1, outputs)
            except Fenced:
                log.info("axis sender: partition read again or taken over", partition=str(tp))
                self._unconfirmed.pop(tp, None)
                return False
            self._unconfirmed[tp] = record.offset + 1
        return True

    async def _deliver(self, record: Record) -> list[NewRecord] | None:
        """Send one record until the axis takes it or its budget is spent: the outputs
        to commit with its offset, or None when stopping first."""
        to = json.loads(record.header_str(H.UPSTREAM_REQUESTED) or "[]") or [
            record.header_str("requested-as") or record.header_str(H.RECIPIENT)
        ]
        kind = record.header_str(H.KIND) or "document"
        refusals = 0
        while not self._stopping.is_set():
            if not await self._breaker_allows():
                return None
            try:
                answer = await self.client.send_edoc(
                    record.value or b"",
                    record.header_str(H.SENDER),
                    to,
                    "status" if kind == "status" else "edoc",
                )
            except AxisError as exc:
                self.metrics.axis_failed("sendEdoc", exc.code)
                if exc.unavailable:
                    self.breaker.failed(time.monotonic())
                    self.metrics.axis_breaker(self.breaker.state)
                    log.warning(
                        "national axis unavailable; the envelope waits",
                        message_id=record.header_str(H.MESSAGE_ID),
                        error=str(exc),
                        breaker=self.breaker.state.name.lower(),
                    )
                    await self._pause(backoff_delay(1, 0.2, 1.0, self._rng))
                    continue
                self._answered()
                refusals += 1
                if refusals >= self.settings.retry_attempts:
                    return self._dead_letter(record, exc)
                delay = backoff_delay(
                    refusals, self.settings.retry_base, self.settings.retry_max, self._rng
                )
                log.info(
                    "national axis refused an envelope; retrying",
                    message_id=record.header_str(H.MESSAGE_ID),
                    error=str(exc),
                    attempt=refusals,
                    retry_in=round(delay, 2),
                )
                await self._pause(delay)
                continue
            self._answered()
            doc_id = str(answer.fields.get("DocId") or "")  # the SDK's spelling
            outcome = "already-there" if answer.already_there else "sent"
            self.metrics.upstream_done(outcome, (now_ms() - _routed_at(record)) / 1000)
            log.info(
                "sent to the national axis",
                message_id=record.header_str(H.MESSAGE_ID),
                axis_doc_id=doc_id,
                outcome=outcome,
            )
            return self._receipts(record, ReceiptKind.SENT_UPSTREAM, axis_doc_id=doc_id)
        return None

    def _answered(self) -> None:
        """The axis answered (even a refusal): it is up."""
        self.breaker.succeeded()
        self.metrics.axis_breaker(self.breaker.state)

    async def _breaker_allows(self) -> bool:
        while not self._stopping.is_set():
            now = time.monotonic()
            if self.breaker.allow(now):
                self.metrics.axis_breaker(self.breaker.state)
                return True
            await self._pause(self.breaker.retry_in(now))
        return False

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    def _dead_letter(self, record: Record, exc: AxisError) -> list[NewRecord]:
        log.error(
            "national axis refused an envelope for good; dead-lettered",
            message_id=record.header_str(H.MESSAGE_ID),
            error=str(exc),
        )
        self.metrics.upstream_done("dead-lettered")
        problem = Problem(
            "upstream-failed",
            f"the national axis refused it {self.settings.retry_attempts} times: {exc}",
        )
        # The upstream record's headers (its recipients, kind, ids) stay with it: a
        # replay (docbroker rejected replay) puts it back on `upstream` as it was.
        own = {H.PRODUCED_AT, H.STAGE, H.PROBLEMS}
        kept = tuple((k, v) for k, v in record.headers if k not in own)
        dead = NewRecord(
            topic=self.topics.rejected,
            key=record.key,
            value=record.value,
            headers=kept
            + make_headers(
                {
                    H.PRODUCED_AT: now_ms(),
                    H.STAGE: "upstream",
                    H.PROBLEMS: problems_json([problem]),
                }
            ),
        )
        receipts = self._receipts(
            record, ReceiptKind.UPSTREAM_FAILED, error_code=exc.code, reason=str(exc)
        )
        return [dead, *receipts]

    def _receipts(self, record: Record, kind: ReceiptKind, **fields: str) -> list[NewRecord]:
        """One receipt per recipient the record was for."""
        recipients = json.loads(record.header_str(H.UPSTREAM_TO) or "[]") or [
            record.header_str(H.RECIPIENT)
        ]
        at = now_ms()
        return [
            Receipt(
                kind,
                at,
                record.header_str(H.MESSAGE_ID),
                record.header_str(H.DOCUMENT_ID),
                record.header_str(H.SENDER),
                recipient,
                record.header_str(H.TRACE_ID),
                record.header_str(H.KIND) or "document",
                record.header_str("code"),
                record.header_str("promulgation-date"),
                record.header_str(H.SHA256),
                **fields,
            ).to_record(self.topics.receipts)
            for recipient in recipients
        ]

    async def _measure_queue(self) -> None:
        """The queue depth: records after the first unconfirmed one of each partition
        this instance sends."""
        while not self._stopping.is_set():
            with contextlib.suppress(Exception):
                ends = await self.log_.end_offsets([self.topics.upstream])
                depth = sum(
                    max(0, ends.get(tp, start) - start) for tp, start in self._unconfirmed.items()
                )
                self.metrics.upstream_queue(depth)
            await self._pause(2.0)


def _routed_at(record: Record) -> int:
    raw = record.header_str(H.PRODUCED_AT)
    return int(raw) if raw.isdigit() else record.timestamp_ms
