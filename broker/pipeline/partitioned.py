"""A consumer-group member that works its partitions concurrently, each in order.

The pipeline and the national axis's upstream sender share this shape: one task
polls and queues records per partition; one worker task per partition takes
batches from its queue and handles them (process, then commit outputs with the
consumed offset). A batch that fails is given up and read again from the
committed offset. While too much is queued the partitions are paused (polling
goes on, fetching nothing), so memory stays bounded and the membership alive.
On stop, the batch each worker has in hand is finished.

Each queue holds the records of one generation of its partition (see
GroupConsumer): when the consumer restarts a partition from its committed offset
(a failed commit, a rebalance that gives it back), what was queued before is
dropped unprocessed, and a batch in hand from before cannot commit (`Claim`).
The records come again, and each is processed once.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from broker.core.errors import BackendUnavailable, StorageFull
from broker.core.logrecords import NewRecord, Position, Record, TopicPartition
from broker.log.interface import GroupConsumer

log = structlog.get_logger(__name__)

# Seconds a partition's worker waits after a batch failed for lack of room: each try
# processes the batch again, and the disk is rarely freed within a second.
FULL_DISK_PAUSE = 2.0


@dataclass(frozen=True)
class Claim:
    """A partition as its records were polled: one generation of this member's
    reading of it. A commit through it is refused (`Fenced`) once the consumer read
    the partition again from its committed offset."""

    consumer: GroupConsumer
    tp: TopicPartition
    generation: int

    async def commit(self, next_offset: int, outputs: Sequence[NewRecord] = ()) -> list[Position]:
        return await self.consumer.commit(self.tp, next_offset, outputs, generation=self.generation)

    @property
    def current(self) -> bool:
        """Whether the records of this claim are still the ones to process."""
        return self.consumer.generation(self.tp) == self.generation


@dataclass
class _Queue:
    """A partition's polled records, all of one generation."""

    generation: int
    records: list[Record] = field(default_factory=list)


class PartitionWorkers(abc.ABC):
    """Subclasses say how to handle one batch of one partition (`_handle_batch`)."""

    name: str = "consumer"

    def __init__(
        self,
        batch_size: int,
        poll_timeout: float,
        queue_limit: int,
        *,
        batch_bytes: int | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.poll_timeout = poll_timeout
        self.queue_limit = queue_limit
        # Bytes queued stop the polling too: a backlog of 5 MB packages must not fill
        # the memory with queue_limit of them.
        self.queue_limit_bytes = 4 * batch_bytes if batch_bytes else None
        self._queued_bytes = 0
        self._stopping = asyncio.Event()
        self._queues: dict[TopicPartition, _Queue] = {}
        self._workers: dict[TopicPartition, asyncio.Task[None]] = {}
        self._queued = 0

    @abc.abstractmethod
    async def _handle_batch(self, claim: Claim, records: Sequence[Record]) -> bool:
        """Handle and commit one batch (through `claim`); False when the partition's
        queue must be dropped (the partition is no longer this member's)."""

    def _released(self, tp: TopicPartition) -> None:  # noqa: B027 - optional hook
        """The partition was assigned away (forget what was cached about it)."""

    @property
    def queued(self) -> int:
        """Records polled and not yet handled."""
        return self._queued

    async def _run(self, consumer: GroupConsumer) -> None:
        """Poll, and hand each partition's records to that partition's worker task."""
        backoff = 0.1
        paused = False
        while not self._stopping.is_set():
            try:
                timeout = self.poll_timeout
                if self._full():
                    # Full: fetch nothing more, but keep polling, so that the group does
                    # not take this member for dead (Kafka's max.poll.interval) while its
                    # work waits, e.g. behind an unavailable national axis.
                    consumer.pause(consumer.assignment())
                    paused, timeout = True, min(timeout, 0.1)
                elif paused:
                    consumer.resume(consumer.assignment())
                    paused = False
                batches = await consumer.poll(timeout, self.batch_size * 4)
                self._queue(consumer, batches)
                backoff = 0.1
            except BackendUnavailable as exc:
                log.warning(
                    f"{self.name}: backend unavailable, retrying", error=str(exc), retry_in=backoff
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._stopping.wait()
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception(f"{self.name} loop failed; continuing")
                await asyncio.sleep(1.0)
        # Stopping: the batch each worker has in hand is finished.
        await asyncio.gather(*self._workers.values(), return_exceptions=True)

    def _queue(
        self, consumer: GroupConsumer, batches: Mapping[TopicPartition, Sequence[Record]]
    ) -> None:
        """Queue what a poll returned, each partition's records with their generation
        (read now, before any await); a queue of an older generation is dropped."""
        assigned = consumer.assignment()
        for tp in [tp for tp in self._workers if tp not in assigned]:
            self._released(tp)
        for tp, recs in batches.items():
            generation = consumer.generation(tp)
            if generation is None:
                continue  # not this member's any more
            queue = self._queues.get(tp)
            if queue is None or queue.generation != generation:
                self._drop(tp)
                queue = self._queues[tp] = _Queue(generation)
            queue.records.extend(recs)
            self._queued += len(recs)
            self._queued_bytes += sum(map(_size, recs))
            worker = self._workers.get(tp)
            if worker is None or worker.done():
                self._workers[tp] = asyncio.create_task(
                    self._drain(consumer, tp), name=f"{self.name}-{tp}"
                )

    def _drop(self, tp: TopicPartition, generation: int | None = None) -> None:
        """Forget what is queued for tp (of `generation` only, if given): uncommitted,
        it will be read again."""
        queue = self._queues.get(tp)
        if queue is not None and generation in (None, queue.generation):
            self._queued -= len(queue.records)
            self._queued_bytes -= sum(map(_size, queue.records))
            del self._queues[tp]

    async def _drain(self, consumer: GroupConsumer, tp: TopicPartition) -> None:
        """The partition's worker: its queued records in order, a commit per batch."""
        while (queue := self._queues.get(tp)) is not None and queue.records:
            if self._stopping.is_set():
                self._drop(tp)
                return
            claim = Claim(consumer, tp, queue.generation)
            if not claim.current:  # read again from the committed offset since polled
                self._drop(tp, claim.generation)
                continue
            batch = self._next_batch(queue.records)
            self._queued -= len(batch)
            self._queued_bytes -= sum(map(_size, batch))
            try:
                if not await self._handle_batch(claim, batch):
                    self._drop(tp, claim.generation)
            except StorageFull as exc:  # the log warned once for the episode
                await self._give_up(claim)
                log.debug(
                    f"{self.name}: batch failed; it will be read again",
                    partition=str(tp),
                    error=str(exc),
                )
                await self._pause(FULL_DISK_PAUSE)
            except BackendUnavailable as exc:
                await self._give_up(claim)
                log.warning(
                    f"{self.name}: batch failed; it will be read again",
                    partition=str(tp),
                    error=str(exc),
                )
                await asyncio.sleep(0.5)
            except Exception:
                await self._give_up(claim)
                log.exception(
                    f"{self.name}: batch failed; it will be read again", partition=str(tp)
                )
                await asyncio.sleep(1.0)

    def _full(self) -> bool:
        """Enough is queued: fetch nothing more until the workers took some."""
        over_bytes = self.queue_limit_bytes is not None and (
            self._queued_bytes >= self.queue_limit_bytes
        )
        return self._queued >= self.queue_limit or over_bytes

    def _next_batch(self, records: list[Record]) -> list[Record]:
        """The first records of a queue, at most batch_size of them and batch_bytes
        (always one: a record larger than batch_bytes goes alone)."""
        n, size = 0, 0
        limit = len(records) if self.batch_size is None else min(self.batch_size, len(records))
        while n < limit:
            size += _size(records[n])
            if n and self.batch_bytes is not None and size > self.batch_bytes:
                break
            n += 1
        batch = records[:n]
        del records[:n]
        return batch

    async def _pause(self, seconds: float) -> None:
        """Wait, unless stopping (the batch is read again by whoever owns it next)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _give_up(self, claim: Claim) -> None:
        """Drop what was queued with the failed batch and read the partition again from
        its committed offset (the consumer did, if the commit failed; else do it now,
        or later batches would commit past the failed one)."""
        self._drop(claim.tp, claim.generation)
        if claim.current:
            await claim.consumer.rewind(claim.tp)


def _size(record: Record) -> int:
    """What a queued record holds in memory, near enough (its value dominates)."""
    return len(record.value or b"") + len(record.key or b"")
