"""The Kafka backend's readers: a consumer-group member (one transactional producer
per assigned input partition, so that a zombie is fenced) and a group-less tailer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    ProducerFenced,
)

from broker.core.errors import BackendUnavailable, Fenced, RecordTooLarge
from broker.core.logrecords import NewRecord, Position, Record, TopicPartition
from broker.log.interface import BeforeCommitHook, GroupConsumer, Tailer
from broker.log.kafka_common import get_many, kafka_tp, record_of, send_all, tp_of, wrapped

if TYPE_CHECKING:
    from broker.log.kafka import KafkaLog

log = structlog.get_logger(__name__)


class KafkaGroupConsumer(GroupConsumer, ConsumerRebalanceListener):
    """A group member owning one transactional producer per assigned partition."""

    def __init__(self, log_: KafkaLog, group: str, topics: list[str]) -> None:
        self.log_ = log_
        self.group = group
        self.topics = topics
        self._consumer: AIOKafkaConsumer | None = None
        self._producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._locks: dict[TopicPartition, asyncio.Lock] = {}
        self._generations: dict[TopicPartition, int] = {}
        self._last_generation = 0
        self._failure: Exception | None = None  # a partition's producer refused: poll says so

    def _txn_id(self, tp: TopicPartition) -> str:
        return f"{self.group}.{tp.topic}.{tp.partition}"

    async def start(self) -> None:
        s = self.log_.settings
        self._consumer = AIOKafkaConsumer(
            **self.log_.consumer_kwargs(),
            group_id=self.group,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=max(300, s.session_timeout_ms // 3),
        )
        self._consumer.subscribe(self.topics, listener=self)
        try:
            await self._consumer.start()
        except BaseException as exc:
            # Failed or cancelled halfway: stop the consumer now (one left to the
            # garbage collector keeps its connections until then).
            consumer, self._consumer = self._consumer, None
            await asyncio.shield(_stop_consumer(consumer))
            if isinstance(exc, KafkaError):
                raise self._fail(exc, f"join group {self.group}", "Read") from exc
            raise

    def _fail(self, exc: BaseException, what: str, operation: str, tp: Any = None) -> Exception:
        txn_id = self._txn_id(tp) if tp is not None else ""
        return self.log_.fail(exc, what, operation, self.topics, group=self.group, txn_id=txn_id)

    async def close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(KafkaError):
                await self._consumer.stop()
            self._consumer = None
        for tp in list(self._producers):
            await self._close_producer(tp)

    async def _close_producer(self, tp: TopicPartition) -> None:
        producer = self._producers.pop(tp, None)
        self._committed.pop(tp, None)
        self._generations.pop(tp, None)
        if producer is not None:
            with contextlib.suppress(KafkaError):
                await producer.stop()

    async def _open_partition(self, tp: TopicPartition) -> None:
        """Fence the previous owner, then start from the group's committed offset."""
        assert self._consumer is not None
        producer = self.log_.transactional_producer(self._txn_id(tp))
        try:
            await producer.start()  # init_transactions: completes or aborts the old owner's txn
        except KafkaError as exc:  # in aiokafka's rebalance task: the next poll raises it
            with contextlib.suppress(KafkaError):
                await producer.stop()
            self._failure = self._fail(exc, f"open {tp}", "Write", tp)
            raise
        try:
            await self._seek_committed(tp)
        except BaseException:
            with contextlib.suppress(KafkaError):
                await producer.stop()
            raise
        # Only now may poll hand out records of tp (it filters on this mapping).
        self._producers[tp] = producer
        self._new_generation(tp)

    def _new_generation(self, tp: TopicPartition) -> None:
        """tp is read again from its committed offset: what was polled before is stale."""
        self._last_generation += 1
        self._generations[tp] = self._last_generation

    async def _seek_committed(self, tp: TopicPartition) -> None:
        assert self._consumer is not None
        ktp = kafka_tp(tp)
        committed = await self._consumer.committed(ktp)
        if committed is None:
            committed = 0  # from the start; auto_offset_reset=earliest if it was deleted
        self._consumer.seek(ktp, committed)
        self._committed[tp] = committed

    # ConsumerRebalanceListener
    async def on_partitions_revoked(self, revoked: Any) -> None:
        for ktp in revoked:
            tp = tp_of(ktp)
            async with self._lock(tp):
                await self._close_producer(tp)
        if revoked:
            log.info(
                "partitions revoked",
                group=self.group,
                partitions=sorted(map(str, map(tp_of, revoked))),
            )

    async def on_partitions_assigned(self, assigned: Any) -> None:
        new = [tp_of(k) for k in assigned if tp_of(k) not in self._producers]
        await asyncio.gather(*(self._open_partition(tp) for tp in new))
        if new:
            log.info("partitions assigned", group=self.group, partitions=sorted(map(str, new)))

    def _lock(self, tp: TopicPartition) -> asyncio.Lock:
        return self._locks.setdefault(tp, asyncio.Lock())

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._producers)

    def generation(self, tp: TopicPartition) -> int | None:
        return self._generations.get(tp) if tp in self._producers else None

    def _owned_ktps(self, tps: Collection[TopicPartition]) -> list[Any]:
        assigned = self._consumer.assignment() if self._consumer is not None else set()
        return [k for k in map(kafka_tp, tps) if k in assigned]

    def pause(self, tps: Collection[TopicPartition]) -> None:
        if self._consumer is not None:
            self._consumer.pause(*self._owned_ktps(tps))

    def resume(self, tps: Collection[TopicPartition]) -> None:
        if self._consumer is not None:
            self._consumer.resume(*self._owned_ktps(tps))

    async def poll(
        self, timeout: float, max_records: int
    ) -> Mapping[TopicPartition, Sequence[Record]]:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        data = await get_many(
            self._consumer, timeout, max_records, "poll", lambda e: self._fail(e, "poll", "Read")
        )
        out: dict[TopicPartition, list[Record]] = {}
        for ktp, msgs in data.items():
            tp = tp_of(ktp)
            if tp in self._producers and msgs:
                out[tp] = [record_of(m) for m in msgs]
        return out

    async def commit(
        self,
        tp: TopicPartition,
        next_offset: int,
        outputs: Sequence[NewRecord] = (),
        *,
        generation: int | None = None,
        before_commit: BeforeCommitHook | None = None,
    ) -> list[Position]:
        async with self._lock(tp):
            producer = self._producers.get(tp)
            if producer is None:
                raise Fenced(f"{tp} is not assigned to this member")
            if generation is not None and generation != self._generations.get(tp):
                raise Fenced(f"{tp}: polled in generation {generation}, read again since")
            limit = self.log_.max_record_bytes
            if too_large := [r for r in outputs if r.size > limit]:
                raise RecordTooLarge(
                    f"record of {too_large[0].size} bytes exceeds {limit} on {too_large[0].topic}"
                )
            try:
                await producer.begin_transaction()
                metas = await send_all(producer, outputs)
                await producer.send_offsets_to_transaction({kafka_tp(tp): next_offset}, self.group)
                if before_commit is not None:
                    before_commit()
                await producer.commit_transaction()
            except ProducerFenced as exc:
                await self._close_producer(tp)
                raise Fenced(f"{tp}: fenced by a newer owner") from exc
            except MessageSizeTooLargeError as exc:  # a broker's limit below ours
                await self._abandon_transaction(tp)
                raise RecordTooLarge(f"commit {tp}: {exc}") from exc
            except KafkaError as exc:
                # The transaction's fate may be unknown (a timeout): a fresh producer's
                # init_transactions settles it, then the committed offset tells the truth.
                await self._reset(tp)
                raise self._fail(exc, f"commit {tp}", "Write", tp) from exc
            self._committed[tp] = next_offset
            self.log_.committed_here(self.group, tp, next_offset)
            return [Position(m.topic, m.partition, m.offset) for m in metas]

    async def _abandon_transaction(self, tp: TopicPartition) -> None:
        """Abort the open transaction (never committed) with a fresh producer's
        init_transactions, and go on reading where tp was: the caller commits again."""
        old = self._producers[tp]
        with contextlib.suppress(KafkaError):
            await old.stop()
        producer = self.log_.transactional_producer(self._txn_id(tp))
        try:
            await producer.start()
        except KafkaError as exc:
            self._producers.pop(tp, None)
            await self._reset(tp)
            raise wrapped(exc, f"abort {tp}") from exc
        self._producers[tp] = producer

    async def _reset(self, tp: TopicPartition) -> None:
        await self._close_producer(tp)
        try:
            await self._open_partition(tp)
        except KafkaError as exc:
            log.warning("partition reset failed", partition=str(tp), error=str(exc))

    async def rewind(self, tp: TopicPartition) -> None:
        if self._consumer is not None and tp in self._committed:
            self._consumer.seek(kafka_tp(tp), self._committed[tp])
            if tp in self._producers:
                self._new_generation(tp)


class KafkaTailer(Tailer):
    """Every partition of some topics, read_committed, from remembered positions."""

    def __init__(
        self,
        log_: KafkaLog,
        topics: list[str],
        positions: dict[TopicPartition, int],
        only: Collection[TopicPartition] | None = None,
        *,
        lagging: bool = False,
    ) -> None:
        self.log_ = log_
        self.lagging = lagging
        self.topics = topics
        self._positions = positions
        self._only = frozenset(only) if only is not None else None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        s = self.log_.settings
        # A lagging reader (a report's view, nobody waits on it) takes fuller fetches,
        # fewer of them: each costs the broker and this process as much as a full one.
        fuller = (
            {"fetch_max_wait_ms": s.tail_fetch_wait_ms, "fetch_min_bytes": s.tail_fetch_min_bytes}
            if self.lagging
            else {}
        )
        self._consumer = AIOKafkaConsumer(**self.log_.consumer_kwargs(), group_id=None, **fuller)
        try:
            await self._consumer.start()
            tps = [
                tp
                for tp in await self.log_.partitions_of(self.topics)
                if self._only is None or tp in self._only
            ]
            self._consumer.assign([kafka_tp(tp) for tp in tps])
            for tp in tps:
                # Offset 0 may be gone to retention: auto_offset_reset=earliest covers it.
                self._consumer.seek(kafka_tp(tp), self._positions.get(tp, 0))
        except BaseException as exc:
            # Failed or cancelled halfway (the log closed under it, a daemon stopping):
            # stop the consumer now rather than leave it to the garbage collector.
            consumer, self._consumer = self._consumer, None
            await asyncio.shield(_stop_consumer(consumer))
            if isinstance(exc, KafkaError):
                raise self.log_.fail(exc, "tail", "Read", self.topics) from exc
            raise

    async def close(self) -> None:
        if self._consumer is not None:
            await _stop_consumer(self._consumer)
            self._consumer = None

    async def positions(self) -> dict[TopicPartition, int]:
        if self._consumer is None:
            raise BackendUnavailable("tailer is not started")
        try:
            return {tp_of(k): await self._consumer.position(k) for k in self._consumer.assignment()}
        except KafkaError as exc:
            raise wrapped(exc, "tail position") from exc

    async def poll(self, timeout: float, max_records: int) -> Sequence[Record]:
        data = await get_many(
            self._consumer,
            timeout,
            max_records,
            "tail poll",
            lambda e: self.log_.fail(e, "tail poll", "Read", self.topics),
        )
        out = []
        for msgs in data.values():
            for m in msgs:
                out.append(record_of(m))
                self._positions[TopicPartition(m.topic, m.partition)] = m.offset + 1
        return out


async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer. aiokafka's group-less coordinator cancels its own background
    task on close and awaits it; when the consumer stops right after it started (an
    empty topic read to its end) that task has not run yet, and the await raises
    CancelledError halfway through the stop. One turn of the loop lets it start."""
    await asyncio.sleep(0)
    with contextlib.suppress(KafkaError):
        await consumer.stop()
