"""A consumer-group member that works its partitions concurrently, each in order.

The pipeline and the national axis's upstream sender share this shape: one task
polls and queues records per partition; one worker task per partition takes
batches from its queue and handles them (process, then commit outputs with the
consumed offset). A batch that fails is given up and read again from the
committed offset. While too much is queued the partitions are paused (polling
goes on, fetching nothing), so memory stays bounded and the membership alive.
On stop, the batch each worker has in hand is finished.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Sequence

import structlog

from broker.core.errors import BackendUnavailable
from broker.core.logrecords import Record, TopicPartition
from broker.log.interface import GroupConsumer

log = structlog.get_logger(__name__)


class PartitionWorkers(abc.ABC):
    """Subclasses say how to handle one batch of one partition (`_handle_batch`)."""

    name: str = "consumer"

    def __init__(self, batch_size: int, poll_timeout: float, queue_limit: int) -> None:
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.queue_limit = queue_limit
        self._stopping = asyncio.Event()
        self._queues: dict[TopicPartition, list[Record]] = {}
        self._workers: dict[TopicPartition, asyncio.Task[None]] = {}
        self._queued = 0

    @abc.abstractmethod
    async def _handle_batch(
        self, consumer: GroupConsumer, tp: TopicPartition, records: Sequence[Record]
    ) -> bool:
        """Handle and commit one batch; False when the partition's queue must be dropped
        (the partition is no longer this member's)."""

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
                if self._queued >= self.queue_limit:
                    # Full: fetch nothing more, but keep polling, so that the group does
                    # not take this member for dead (Kafka's max.poll.interval) while its
                    # work waits, e.g. behind an unavailable national axis.
                    consumer.pause(consumer.assignment())
                    paused, timeout = True, min(timeout, 0.1)
                elif paused:
                    consumer.resume(consumer.assignment())
                    paused = False
                batches = await consumer.poll(timeout, self.batch_size * 4)
                assigned = consumer.assignment()
                for tp in [tp for tp in self._workers if tp not in assigned]:
                    self._released(tp)
                for tp, recs in batches.items():
                    self._queues.setdefault(tp, []).extend(recs)
                    self._queued += len(recs)
                    worker = self._workers.get(tp)
                    if worker is None or worker.done():
                        self._workers[tp] = asyncio.create_task(
                            self._drain(consumer, tp), name=f"{self.name}-{tp}"
                        )
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

    def _take(self, tp: TopicPartition, n: int) -> list[Record]:
        queue = self._queues.get(tp, [])
        batch = queue[:n]
        del queue[:n]
        self._queued -= len(batch)
        return batch

    def _drop(self, tp: TopicPartition) -> None:
        """Forget what is queued for tp: uncommitted, it will be read again."""
        self._take(tp, len(self._queues.get(tp, [])))

    async def _drain(self, consumer: GroupConsumer, tp: TopicPartition) -> None:
        """The partition's worker: its queued records in order, a commit per batch."""
        while self._queues.get(tp):
            if self._stopping.is_set() or tp not in consumer.assignment():
                self._drop(tp)
                return
            batch = self._take(tp, self.batch_size)
            try:
                if not await self._handle_batch(consumer, tp, batch):
                    self._drop(tp)
                    return
            except BackendUnavailable as exc:
                self._drop(tp)  # the consumer rewound tp to its committed offset
                log.warning(
                    f"{self.name}: commit failed; the batch will be read again",
                    partition=str(tp),
                    error=str(exc),
                )
                await asyncio.sleep(0.5)
                return
            except Exception:
                self._drop(tp)
                await consumer.rewind(tp)
                log.exception(
                    f"{self.name}: batch failed; it will be read again", partition=str(tp)
                )
                await asyncio.sleep(1.0)
                return
