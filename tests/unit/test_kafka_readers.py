"""ReaderPool's bookkeeping (tests/log/test_kafka_reads.py runs it on real Kafka): a
consumer whose read failed with a Kafka error is closed, never lent again; one whose
read was cancelled is sound and lent again; at most `size` reads hold one at once."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError

from broker.core.errors import BackendUnavailable
from broker.log.kafka_readers import ReaderPool


class Consumer:
    """What the pool calls of a consumer: start, stop, assignment, pause."""

    def __init__(self) -> None:
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def assignment(self) -> set[object]:
        return set()

    def pause(self, *partitions: object) -> None:
        pass


def pool(size: int = 2, kind: type[Consumer] = Consumer) -> tuple[ReaderPool, list[Consumer]]:
    made: list[Consumer] = []

    def make() -> Consumer:
        made.append(kind())
        return made[-1]

    return ReaderPool(make, size), made  # type: ignore[arg-type]


async def test_a_consumer_whose_read_failed_is_closed() -> None:
    readers, made = pool()

    async def fails(consumer: object) -> None:
        raise KafkaConnectionError("gone")

    with pytest.raises(KafkaConnectionError):
        await readers.read(fails)
    assert made[0].stopped and readers.started == 0
    assert await readers.read(lambda c: asyncio.sleep(0, c)) is made[1]


async def test_a_cancelled_read_gives_its_consumer_back() -> None:
    readers, made = pool()
    task = asyncio.create_task(readers.read(lambda c: asyncio.sleep(10)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await readers.read(lambda c: asyncio.sleep(0, c)) is made[0]
    assert len(made) == 1 and not made[0].stopped


async def test_no_more_than_size_reads_at_once() -> None:
    readers, made = pool(size=2)
    running = peak = 0

    async def read(consumer: object) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    await asyncio.gather(*(readers.read(read) for _ in range(10)))
    assert peak == 2 and len(made) == 2
    await readers.close()
    assert all(c.stopped for c in made) and readers.started == 0


async def test_a_consumer_still_starting_when_the_pool_closes_is_stopped() -> None:
    """close() stops the consumers it knows of; one whose start was still under way
    (a fetch as the daemon stops) is stopped by its own start, and the read fails."""
    gate = asyncio.Event()

    class Slow(Consumer):
        async def start(self) -> None:
            await gate.wait()
            self.started = True

    readers, made = pool(kind=Slow)
    task = asyncio.create_task(readers.read(lambda c: asyncio.sleep(0, c)))
    await asyncio.sleep(0.01)
    await readers.close()
    gate.set()
    with pytest.raises(BackendUnavailable):
        await task
    assert made[0].started and made[0].stopped
