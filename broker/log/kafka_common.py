"""What the Kafka backend's parts share: aiokafka values as docbroker's, its errors
wrapped into docbroker's, and a quieter aiokafka log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as KafkaTP
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    ProducerFenced,
)

from broker.core.errors import BackendUnavailable, Fenced, RecordTooLarge
from broker.core.logrecords import NewRecord, Record, TopicPartition

log = structlog.get_logger(__name__)

# Room for the record batch framing around the largest record.
BATCH_OVERHEAD = 128 * 1024
TOPIC_ALREADY_EXISTS = 36


class _FencedFutureFilter(logging.Filter):
    """Drop asyncio's "exception was never retrieved" for ProducerFenced.

    When a producer is fenced, aiokafka's transaction manager leaves internal
    futures holding ProducerFenced that nobody awaits; docbroker has already
    handled the fencing (Fenced), so the garbage-collection report is noise.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ProducerFenced)


def install_fenced_future_filter() -> None:
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _FencedFutureFilter) for f in logger.filters):
        logger.addFilter(_FencedFutureFilter())


def tp_of(k: KafkaTP) -> TopicPartition:
    return TopicPartition(k.topic, k.partition)


def kafka_tp(tp: TopicPartition) -> KafkaTP:
    return KafkaTP(tp.topic, tp.partition)


def record_of(msg: Any) -> Record:
    return Record(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        headers=_headers(msg.headers),
        timestamp_ms=msg.timestamp,
    )


def _headers(raw: Sequence[tuple[str, Any]] | None) -> tuple[tuple[str, bytes], ...]:
    """aiokafka's headers as a tuple; their values are bytes already (the records'
    C reader), copied only when not (every record read passes here)."""
    if not raw:
        return ()
    if all(type(v) is bytes for _, v in raw):
        return tuple(raw)
    return tuple((k, bytes(v)) for k, v in raw)


def wrapped(exc: BaseException, what: str) -> Exception:
    if isinstance(exc, MessageSizeTooLargeError):
        return RecordTooLarge(f"{what}: {exc}")
    if isinstance(exc, ProducerFenced):
        return Fenced(f"{what}: {exc}")
    return BackendUnavailable(f"{what}: {exc.__class__.__name__}: {exc}")


async def get_many(
    consumer: AIOKafkaConsumer | None,
    timeout: float,
    max_records: int,
    what: str,
    fail: Callable[[BaseException], Exception] | None = None,
) -> dict[KafkaTP, list[Any]]:
    """A poll; `fail` makes docbroker's error of aiokafka's (default: wrapped)."""
    if consumer is None:
        raise BackendUnavailable(f"{what}: the consumer is not started")
    try:
        return await consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
    except KafkaError as exc:
        raise (fail(exc) if fail else wrapped(exc, what)) from exc


async def send_all(producer: AIOKafkaProducer, records: Sequence[NewRecord]) -> list[Any]:
    """Send every record and wait for all of them; every delivery future is
    awaited even when one fails (no "exception was never retrieved")."""
    futs: list[asyncio.Future[Any]] = []
    try:
        for r in records:
            futs.append(
                await producer.send(
                    r.topic, r.value, key=r.key, headers=list(r.headers), partition=r.partition
                )
            )
    finally:
        results = await asyncio.gather(*futs, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def fetch_committed(
    admin: Any, group: str, tps: Sequence[TopicPartition], wait: float
) -> dict[TopicPartition, int]:
    """The offsets `group` committed for `tps` (0 where none), waiting up to `wait`
    seconds for a cluster's first group (its offsets topic is created on demand)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            done = await admin.list_consumer_group_offsets(
                group, partitions=[kafka_tp(tp) for tp in tps]
            )
            break
        except KafkaError as exc:
            if not exc.retriable or loop.time() > deadline:
                raise wrapped(exc, "committed offsets") from exc
            await asyncio.sleep(0.2)
    metas = {tp: done.get(kafka_tp(tp)) for tp in tps}
    return {tp: m.offset if m is not None and m.offset >= 0 else 0 for tp, m in metas.items()}
