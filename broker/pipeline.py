"""The pipeline runner: inbound -> InboundProcessor -> outputs, one transaction per batch.

Each polled partition batch is processed off the event loop (XML and crypto
work in worker threads), then its outputs and the consumed offset are committed
together. Partitions are handled concurrently; batches of one partition in order.
On stop, the batch in hand is finished and committed before the consumer leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence

import structlog

from broker.errors import BackendUnavailable, Fenced, RecordTooLarge
from broker.log.interface import DurableLog, GroupConsumer, Record, TopicPartition
from broker.metrics import Metrics
from broker.problems import Problem
from broker.processing import InboundProcessor, Outcome
from broker.records import now_ms, received_at_ms

log = structlog.get_logger(__name__)


class Pipeline:
    """Consumes `inbound` as a member of the pipeline's consumer group."""

    def __init__(
        self,
        log_: DurableLog,
        processor: InboundProcessor,
        metrics: Metrics,
        *,
        group: str,
        batch_size: int,
        poll_timeout: float = 0.5,
    ) -> None:
        self.log_ = log_
        self.processor = processor
        self.metrics = metrics
        self.group = group
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self._consumer: GroupConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.running = False

    async def start(self) -> None:
        self._consumer = self.log_.group_consumer(self.group, [self.processor.topics.inbound])
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="pipeline")
        self.running = True

    async def stop(self) -> None:
        """Finish and commit the batch in hand, then leave the group."""
        self._stopping.set()
        if self._task is not None:
            await self._task
        if self._consumer is not None:
            await self._consumer.close()
        self.running = False

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                batches = await consumer.poll(self.poll_timeout, self.batch_size)
                if batches:
                    await asyncio.gather(
                        *(self._handle(consumer, tp, recs) for tp, recs in batches.items())
                    )
                backoff = 0.1
            except BackendUnavailable as exc:
                log.warning(
                    "pipeline: backend unavailable, retrying", error=str(exc), retry_in=backoff
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("pipeline loop failed; continuing")
                await asyncio.sleep(1.0)
        self.running = False

    async def _handle(
        self, consumer: GroupConsumer, tp: TopicPartition, records: Sequence[Record]
    ) -> None:
        started = time.monotonic()
        outcomes = await asyncio.to_thread(self.processor.process_batch, records)
        outputs = [r for o in outcomes for r in o.records]
        next_offset = records[-1].offset + 1
        try:
            await consumer.commit(tp, next_offset, outputs)
        except Fenced as exc:
            self.metrics.pipeline_commit_failed("fenced")
            log.info(
                "pipeline: partition taken over by another member",
                partition=str(tp),
                detail=str(exc),
            )
            return
        except RecordTooLarge:
            self.metrics.pipeline_commit_failed("too-large")
            outcomes = await self._commit_one_by_one(consumer, tp, records)
        except BackendUnavailable:
            self.metrics.pipeline_commit_failed("backend")
            raise
        self._observe(records, outcomes, time.monotonic() - started)

    async def _commit_one_by_one(
        self, consumer: GroupConsumer, tp: TopicPartition, records: Sequence[Record]
    ) -> list[Outcome]:
        """A batch whose outputs were too large: find the record and dead-letter it."""
        done: list[Outcome] = []
        for record in records:
            outcome = await asyncio.to_thread(self.processor.process, record)
            try:
                await consumer.commit(tp, record.offset + 1, outcome.records)
            except RecordTooLarge as exc:
                outcome = self._too_large(record, str(exc))
                await consumer.commit(tp, record.offset + 1, outcome.records)
            done.append(outcome)
        return done

    def _too_large(self, record: Record, detail: str) -> Outcome:
        stripped = Record(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            b"",
            record.headers,
            record.timestamp_ms,
        )
        problem = Problem("too-large", f"outputs exceed the record limit: {detail}")
        return self.processor.refuse(stripped, [problem], now_ms())

    def _observe(
        self, records: Sequence[Record], outcomes: Sequence[Outcome], seconds: float
    ) -> None:
        counts = Counter(o.outcome for o in outcomes)
        self.metrics.pipeline_batch_done(seconds, counts)
        at = now_ms()
        for record, outcome in zip(records, outcomes, strict=True):
            latency = (at - received_at_ms(record)) / 1000
            for _ in range(outcome.deliveries):
                self.metrics.delivered(latency)
            for code in outcome.codes:
                self.metrics.envelope_refused("pipeline", code)
            if outcome.signature is not None:
                self.metrics.sender_signature(*outcome.signature)
