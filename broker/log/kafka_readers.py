"""Random-access consumers of the Kafka backend: the consumers that read one record by
its position (a fetch, an audit lookup), at most `size` at once.

A read assigns its consumer the record's partition, seeks and fetches: that state is
the consumer's, so a consumer serves one read at a time. One consumer for the whole
instance made every fetch wait in one line behind the slowest (a record whose
transaction had not settled yet waits seconds); a pool lets them go on side by side.
Consumers are made when first needed (a log that never reads starts none), kept for
the next read with their partition paused (an idle one fetches nothing in the
background), and closed with the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaTP
from aiokafka.errors import KafkaError

from broker.core.errors import BackendUnavailable
from broker.core.logrecords import Record
from broker.log.kafka_common import record_of

T = TypeVar("T")

READ_WAIT = 10.0  # seconds a read waits for its record to be fetched


class ReaderPool:
    """At most `size` random-access consumers, each lent to one read at a time."""

    def __init__(self, make: Callable[[], AIOKafkaConsumer], size: int) -> None:
        self._make = make
        self.size = size
        self._slots = asyncio.Semaphore(size)
        self._idle: list[AIOKafkaConsumer] = []
        self._made: set[AIOKafkaConsumer] = set()
        self._closed = False

    @property
    def started(self) -> int:
        """Consumers made so far and not closed (for tests and gauges)."""
        return len(self._made)

    async def read(self, fn: Callable[[AIOKafkaConsumer], Awaitable[T]]) -> T:
        """`fn` with a consumer of its own for its duration (waiting for a free one
        when `size` reads are under way). A consumer whose read failed with a Kafka
        error is closed, not lent again."""
        async with self._slots:
            consumer = self._idle.pop() if self._idle else await self._start()
            try:
                result = await fn(consumer)
            except KafkaError:
                await self._discard(consumer)
                raise
            except BaseException:  # cancelled (a caller gone): the consumer is sound
                self._give_back(consumer)
                raise
            self._give_back(consumer)
            return result

    async def _start(self) -> AIOKafkaConsumer:
        if self._closed:
            raise BackendUnavailable("the Kafka log is closed")
        consumer = self._make()
        try:
            await consumer.start()
        except BaseException:
            with contextlib.suppress(KafkaError):
                await consumer.stop()
            raise
        if self._closed:  # the log closed while this one started: close() missed it
            with contextlib.suppress(KafkaError):
                await consumer.stop()
            raise BackendUnavailable("the Kafka log is closed")
        self._made.add(consumer)
        return consumer

    def _give_back(self, consumer: AIOKafkaConsumer) -> None:
        if self._closed:
            return
        assigned = consumer.assignment()
        if assigned:
            consumer.pause(*assigned)
        self._idle.append(consumer)

    async def _discard(self, consumer: AIOKafkaConsumer) -> None:
        self._made.discard(consumer)
        with contextlib.suppress(KafkaError):
            await consumer.stop()

    async def close(self) -> None:
        """Stop every consumer made (a read still under way fails)."""
        self._closed = True
        made, self._made, self._idle = list(self._made), set(), []
        for consumer in made:
            with contextlib.suppress(KafkaError):
                await consumer.stop()


async def fetch_one(consumer: AIOKafkaConsumer, ktp: KafkaTP, offset: int) -> Record | None:
    """The record at `offset` of `ktp`, below the last stable offset, with a consumer
    of its own (read_committed)."""
    consumer.assign([ktp])
    consumer.seek(ktp, offset)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READ_WAIT
    while loop.time() < deadline:
        batch = await consumer.getmany(ktp, timeout_ms=1000, max_records=1)
        for msg in batch.get(ktp, ()):
            return record_of(msg) if msg.offset == offset else None
        if await consumer.position(ktp) > offset:
            return None  # that offset held an aborted or control record
    return None
