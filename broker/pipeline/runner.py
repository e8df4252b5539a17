"""The pipeline runner: inbound and receipts -> processing -> outputs, one transaction
per partition batch.

Each polled partition batch is processed off the event loop (XML and crypto
work in worker threads); its outputs, its chained audit events, the chain's new
head, its dedup entries and the consumed offset are committed together. When
the member takes a partition over it first catches up with the chain heads and
the dedup index, so it continues exactly where its predecessor committed.
Partitions are handled concurrently; batches of one partition in order. On
stop, the batch in hand is finished and committed before the consumer leaves.

Each batch is committed through the claim of the generation it was polled in
(broker.pipeline.partitioned): after a rebalance that gives a partition back, or
a failed commit, the records come again and are processed once. What the
partition's chain head was is cached per generation. An output the log refuses
as too large (the processor refuses what exceeds the configured limit itself)
makes the batch commit record by record, the offending one refused. The worker
processes are supervised (broker.pipeline.supervisor): rebuilt when one dies, a
record that keeps killing them refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Sequence

import structlog

from broker.clock import now_ms
from broker.config import Settings
from broker.core.errors import BackendUnavailable, Fenced, RecordTooLarge, StorageFull
from broker.core.events import ChainHead, link
from broker.core.logrecords import NewRecord, Record, TopicPartition
from broker.core.problems import Problem
from broker.core.records import FirstSeen, H, received_at_ms
from broker.log.interface import DurableLog, GroupConsumer
from broker.metrics import Metrics
from broker.pipeline.batch import BatchContext, Outcome, first_seen
from broker.pipeline.partitioned import Claim, PartitionWorkers
from broker.pipeline.processing import InboundProcessor, lookup_keys
from broker.pipeline.supervisor import SupervisedPool
from broker.pipeline.workers import ProcessingPool
from broker.state.dedup import DedupIndex
from broker.state.directory import DirectoryState
from broker.state.heads import ChainHeads

log = structlog.get_logger(__name__)


class Pipeline(PartitionWorkers):
    """Consumes `inbound` and `receipts` as a member of the pipeline's consumer group."""

    name = "pipeline"

    def __init__(
        self,
        log_: DurableLog,
        processor: InboundProcessor,
        metrics: Metrics,
        *,
        directory: DirectoryState,
        heads: ChainHeads,
        dedup: DedupIndex,
        group: str,
        batch_size: int,
        batch_bytes: int | None = None,
        poll_timeout: float = 0.5,
        processes: int = 0,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(
            batch_size, poll_timeout, queue_limit=batch_size * 4, batch_bytes=batch_bytes
        )
        self.log_ = log_
        self.processor = processor
        self.metrics = metrics
        self.directory = directory
        self.heads = heads
        self.dedup = dedup
        self.group = group
        self.topics = processor.topics
        self._consumer: GroupConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        # Partitions caught up with, the generation that did, and their chain's head.
        self._owned: dict[TopicPartition, tuple[int, ChainHead]] = {}
        self._processes = processes
        self._settings = settings
        self._pool: SupervisedPool | None = None
        self.running = False

    def chain_of(self, tp: TopicPartition) -> str:
        name = "receipts" if tp.topic == self.topics.receipts else "inbound"
        return f"{name}:{tp.partition}"

    def health(self) -> str:
        """Either "ok" or why the pipeline cannot process now (for /readyz)."""
        if not self.running:
            return "not running"
        problem = self._pool.problem if self._pool is not None else None
        return problem or "ok"

    async def start(self) -> None:
        if self._processes and self._settings is not None:
            settings, processes = self._settings, self._processes
            self._pool = SupervisedPool(
                lambda: ProcessingPool.for_pipeline(settings, processes),
                on_rebuild=self.metrics.pipeline_pool_rebuilt,
            )
            await self._pool.start()
            log.info("pipeline worker processes started", processes=self._processes)
        self._consumer = self.log_.group_consumer(
            self.group, [self.topics.inbound, self.topics.receipts]
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._loop(), name="pipeline")
        self.running = True

    async def stop(self) -> None:
        """Finish and commit the batch in hand, then leave the group."""
        self._stopping.set()
        if self._task is not None:
            await self._task
        if self._consumer is not None:
            await self._consumer.close()
        if self._pool is not None:
            await self._pool.stop()
        self.running = False

    async def _loop(self) -> None:
        assert self._consumer is not None
        await self._run(self._consumer)
        self.running = False

    def _released(self, tp: TopicPartition) -> None:
        self._owned.pop(tp, None)

    async def _take_over(self, claim: Claim) -> ChainHead:
        """Catch up with what the partition's previous owner committed, once per
        generation (a partition given back may have had another owner meanwhile)."""
        cached = self._owned.get(claim.tp)
        if cached is not None and cached[0] == claim.generation:
            return cached[1]
        await self.heads.follower.caught_up()
        await self.dedup.follower.caught_up()
        head = self.heads.get(self.chain_of(claim.tp))
        self._owned[claim.tp] = (claim.generation, head)
        return head

    async def _handle_batch(self, claim: Claim, records: Sequence[Record]) -> bool:
        """Process and commit one batch; False when the partition's queue must be dropped."""
        started = time.monotonic()
        tp = claim.tp
        ctx = BatchContext(self.directory.current, self.dedup.committed, now_ms())
        await self._take_over(claim)
        outcomes = await self._process(records, ctx)
        try:
            outcomes = await self._commit(claim, records, outcomes, ctx)
        except Fenced as exc:
            self._owned.pop(tp, None)
            self.metrics.pipeline_commit_failed("fenced")
            log.info(
                "pipeline: partition read again or taken over; its batch is dropped",
                partition=str(tp),
                detail=str(exc),
            )
            return False
        except BackendUnavailable as exc:
            self._owned.pop(tp, None)  # reload the head after the rewind
            self.metrics.pipeline_commit_failed(
                "disk-full" if isinstance(exc, StorageFull) else "backend"
            )
            raise
        self._observe(records, outcomes, time.monotonic() - started)
        return True

    async def _commit(
        self, claim: Claim, records: Sequence[Record], outcomes: list[Outcome], ctx: BatchContext
    ) -> list[Outcome]:
        """The batch's outputs and offset in one transaction; record by record when the
        log refuses an output as too large (the batch is not read again)."""
        head = await self._take_over(claim)
        outputs, new_head = self._outputs(outcomes, records, head, ctx.now_ms)
        try:
            await claim.commit(records[-1].offset + 1, outputs)
        except RecordTooLarge:
            self.metrics.pipeline_commit_failed("too-large")
            return await self._commit_each(claim, records, outcomes, ctx)
        self._committed(claim, new_head, outcomes, records, ctx.now_ms)
        return outcomes

    async def _process(self, records: Sequence[Record], ctx: BatchContext) -> list[Outcome]:
        """The batch's CPU work, off the event loop: in a worker process if there are any."""
        if self._pool is None:
            return await asyncio.to_thread(self.processor.process_batch, records, ctx)
        seen: dict[tuple[str, str], FirstSeen] = {}
        for r in records:
            for k in lookup_keys(r, ctx.directory):
                first = ctx.seen(*k)
                if first is not None:
                    seen[k] = first
        outcomes = await self._pool.process(records, ctx.directory, seen, ctx.now_ms)
        return [
            outcome if outcome is not None else self._poison(record, ctx)
            for record, outcome in zip(records, outcomes, strict=True)
        ]

    def _poison(self, record: Record, ctx: BatchContext) -> Outcome:
        """A record that killed a worker process each time: refused, not retried."""
        log.error(
            "pipeline: a record killed a worker process each time; refused",
            partition=str(record.tp),
            offset=record.offset,
            message_id=record.header_str(H.MESSAGE_ID),
        )
        problem = Problem(
            "internal-error",
            "a pipeline worker process died each time it processed this record",
        )
        return self.processor.refuse(record, [problem], ctx, outcome="failed")

    def _outputs(
        self, outcomes: Sequence[Outcome], records: Sequence[Record], head: ChainHead, at: int
    ) -> tuple[list[NewRecord], ChainHead]:
        outputs = [r for o in outcomes for r in o.records]
        events = [e for o in outcomes for e in o.events]
        linked, new_head = link(events, head, self.topics.events, self.topics.chains)
        outputs += linked
        for outcome, record in zip(outcomes, records, strict=True):
            first = first_seen(record, at)
            outputs += [self.dedup.record(key, first) for key in outcome.dedup]
        return outputs, new_head

    def _committed(
        self,
        claim: Claim,
        head: ChainHead,
        outcomes: Sequence[Outcome],
        records: Sequence[Record],
        at: int,
    ) -> None:
        if claim.tp in self._owned:
            self._owned[claim.tp] = (claim.generation, head)
        for outcome, record in zip(outcomes, records, strict=True):
            self.dedup.remember(outcome.dedup, first_seen(record, at))

    async def _commit_each(
        self,
        claim: Claim,
        records: Sequence[Record],
        outcomes: Sequence[Outcome],
        ctx: BatchContext,
    ) -> list[Outcome]:
        """A batch whose outputs were too large for the log: each record's outcome (not
        processed again) committed alone, and the one that is too large refused."""
        done: list[Outcome] = []
        for record, outcome in zip(records, outcomes, strict=True):
            head = await self._take_over(claim)
            outputs, new_head = self._outputs([outcome], [record], head, ctx.now_ms)
            try:
                await claim.commit(record.offset + 1, outputs)
            except RecordTooLarge as exc:
                outcome, new_head = await self._refuse_too_large(claim, record, head, ctx, exc)
            self._committed(claim, new_head, [outcome], [record], ctx.now_ms)
            done.append(outcome)
        return done

    async def _refuse_too_large(
        self,
        claim: Claim,
        record: Record,
        head: ChainHead,
        ctx: BatchContext,
        exc: RecordTooLarge,
    ) -> tuple[Outcome, ChainHead]:
        """Commit the refusal of a record whose outputs the log would not take (its dead
        letter without the package if even that is too large)."""
        outcome = await asyncio.to_thread(self.processor.too_large, record, ctx, str(exc))
        outputs, new_head = self._outputs([outcome], [record], head, ctx.now_ms)
        try:
            await claim.commit(record.offset + 1, outputs)
        except RecordTooLarge:
            bare = dataclasses.replace(record, value=b"")
            outcome = self.processor.refuse(
                bare, [Problem("too-large", f"its outputs exceed the record limit: {exc}")], ctx
            )
            outputs, new_head = self._outputs([outcome], [record], head, ctx.now_ms)
            await claim.commit(record.offset + 1, outputs)
        return outcome, new_head

    def _observe(
        self, records: Sequence[Record], outcomes: Sequence[Outcome], seconds: float
    ) -> None:
        self.metrics.pipeline_batch_done(seconds, Counter(o.outcome for o in outcomes))
        at = now_ms()
        for record, outcome in zip(records, outcomes, strict=True):
            latency = (at - received_at_ms(record)) / 1000
            for _ in range(outcome.deliveries):
                self.metrics.delivered(latency)
            for code in outcome.codes:
                self.metrics.envelope_refused("pipeline", code)
            # Here, not at the door: the pipeline is where an envelope is finally
            # accepted (the door's may still be refused, or be a resend), once per
            # committed record, whichever adapter brought it.
            for code in outcome.warnings:
                self.metrics.envelope_warned(code)
            if outcome.signature is not None:
                self.metrics.sender_signature(*outcome.signature)
