"""The Kafka backend of the durable log (aiokafka). The only module that imports aiokafka.

- Appends go through one idempotent producer (acks=all); several records that
  must land together go through a transactional producer.
- A group consumer reads with isolation_level=read_committed and owns one
  transactional producer per assigned input partition, its transactional_id
  derived from group, topic and partition. aiokafka 0.14 sends TxnOffsetCommit
  v0 (no KIP-447 group fencing), so this is what fences a zombie: the new owner's
  init_transactions aborts the old owner's open transaction and makes its next
  operation fail with ProducerFenced.
- Before reading a newly assigned partition the consumer waits for that
  producer's initialisation (which completes any pending transaction of the
  previous owner) and only then fetches the committed offset, so it never
  starts from a stale one.
- Topic, producer and consumer size limits all follow `max_record_bytes`.

aiokafka errors are wrapped into docbroker's own (`raise ... from exc`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTP
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    ProducerFenced,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner

from broker.config import KafkaSettings
from broker.core.errors import BackendUnavailable, ConfigError, Fenced, RecordTooLarge
from broker.core.logrecords import NewRecord, Position, Record, TopicPartition, TopicSpec
from broker.log.interface import BeforeCommitHook, DurableLog, GroupConsumer, Tailer

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


def _install_fenced_future_filter() -> None:
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _FencedFutureFilter) for f in logger.filters):
        logger.addFilter(_FencedFutureFilter())


def _tp(k: KafkaTP) -> TopicPartition:
    return TopicPartition(k.topic, k.partition)


def _ktp(tp: TopicPartition) -> KafkaTP:
    return KafkaTP(tp.topic, tp.partition)


def _record(msg: Any) -> Record:
    return Record(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        headers=tuple((k, bytes(v)) for k, v in (msg.headers or ())),
        timestamp_ms=msg.timestamp,
    )


def _wrap(exc: BaseException, what: str) -> Exception:
    if isinstance(exc, MessageSizeTooLargeError):
        return RecordTooLarge(f"{what}: {exc}")
    if isinstance(exc, ProducerFenced):
        return Fenced(f"{what}: {exc}")
    return BackendUnavailable(f"{what}: {exc.__class__.__name__}: {exc}")


async def _getmany(
    consumer: AIOKafkaConsumer | None, timeout: float, max_records: int, what: str
) -> dict[KafkaTP, list[Any]]:
    if consumer is None:
        raise BackendUnavailable(f"{what}: the consumer is not started")
    try:
        return await consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
    except KafkaError as exc:
        raise _wrap(exc, what) from exc


async def _send_all(producer: AIOKafkaProducer, records: Sequence[NewRecord]) -> list[Any]:
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


class KafkaLog(DurableLog):
    """The durable log on an Apache Kafka cluster."""

    name = "kafka"

    def __init__(self, settings: KafkaSettings, *, max_record_bytes: int, instance: str) -> None:
        self.settings = settings
        self.max_record_bytes = max_record_bytes
        self.instance = instance
        self._admin: AIOKafkaAdminClient | None = None
        self._producer: AIOKafkaProducer | None = None
        self._txn_producer: AIOKafkaProducer | None = None
        self._txn_lock = asyncio.Lock()
        self._random: AIOKafkaConsumer | None = None
        self._random_lock = asyncio.Lock()

    # -- client settings

    def common(self) -> dict[str, Any]:
        s = self.settings
        kw: dict[str, Any] = {
            "bootstrap_servers": s.bootstrap_servers.split(","),
            "client_id": s.client_id,
            "request_timeout_ms": s.request_timeout_ms,
            "security_protocol": s.security_protocol,
        }
        if s.security_protocol == "SSL":
            kw["ssl_context"] = create_ssl_context(
                cafile=s.ssl_cafile or None,
                certfile=s.ssl_certfile or None,
                keyfile=s.ssl_keyfile or None,
            )
        return kw

    def producer_kwargs(self) -> dict[str, Any]:
        return {
            **self.common(),
            "acks": "all",
            "enable_idempotence": True,
            "max_request_size": self.max_record_bytes + BATCH_OVERHEAD,
            "linger_ms": 0,
        }

    def consumer_kwargs(self) -> dict[str, Any]:
        fetch = self.max_record_bytes + BATCH_OVERHEAD
        return {
            **self.common(),
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed",
            "max_partition_fetch_bytes": fetch,
            "fetch_max_bytes": max(52428800, 2 * fetch),
        }

    def transactional_producer(self, transactional_id: str) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **self.producer_kwargs(),
            transactional_id=transactional_id,
            transaction_timeout_ms=self.settings.transaction_timeout_ms,
        )

    # -- lifecycle

    async def start(self) -> None:
        _install_fenced_future_filter()
        try:
            self._admin = AIOKafkaAdminClient(**self.common())
            await self._admin.start()
            self._producer = AIOKafkaProducer(**self.producer_kwargs())
            await self._producer.start()
            self._random = AIOKafkaConsumer(**self.consumer_kwargs(), group_id=None)
            await self._random.start()
        except KafkaError as exc:
            await self.close()
            raise _wrap(exc, f"Kafka at {self.settings.bootstrap_servers}") from exc

    async def close(self) -> None:
        for client in (self._txn_producer, self._producer, self._random):
            if client is not None:
                with contextlib.suppress(KafkaError):
                    await client.stop()
        if self._admin is not None:
            with contextlib.suppress(KafkaError):
                await self._admin.close()
        self._admin = self._producer = self._txn_producer = self._random = None

    def _started(self) -> tuple[AIOKafkaAdminClient, AIOKafkaProducer, AIOKafkaConsumer]:
        if self._admin is None or self._producer is None or self._random is None:
            raise BackendUnavailable("the Kafka log is not started")
        return self._admin, self._producer, self._random

    # -- topics

    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        admin, _, _ = self._started()
        s = self.settings
        try:
            existing = set(await admin.list_topics())
            new = [
                NewTopic(
                    spec.name,
                    spec.partitions,
                    s.replication_factor,
                    topic_configs={
                        "max.message.bytes": str(spec.max_record_bytes + BATCH_OVERHEAD),
                        "min.insync.replicas": str(s.min_insync_replicas),
                        "cleanup.policy": "compact" if spec.compacted else "delete",
                    },
                )
                for spec in specs
                if spec.name not in existing
            ]
            if new:
                resp = await admin.create_topics(new)
                for name, code, *rest in resp.topic_errors:
                    if code not in (0, TOPIC_ALREADY_EXISTS):
                        msg = rest[0] if rest else ""
                        raise BackendUnavailable(f"cannot create topic {name}: error {code} {msg}")
                log.info("topics created", topics=[t.name for t in new])
            await self._check_existing([sp for sp in specs if sp.name in existing])
            for spec in specs:  # wait until every partition has a leader
                await self._wait_for_partitions(spec.name, spec.partitions)
            if new:
                await self._wait_for_leaders([t.name for t in new])
        except KafkaError as exc:
            raise _wrap(exc, "ensure topics") from exc

    async def _check_existing(self, specs: Sequence[TopicSpec]) -> None:
        if not specs:
            return
        admin, _, _ = self._started()
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, sp.name) for sp in specs]
        )
        by_name = {sp.name: sp for sp in specs}
        problems = []
        for resp in responses:
            for _err, _msg, _rtype, name, entries in resp.resources:
                spec = by_name.get(name)
                if spec is None:
                    continue
                configs = {e[0]: e[1] for e in entries}
                have = int(configs.get("max.message.bytes", "0") or 0)
                need = spec.max_record_bytes + BATCH_OVERHEAD
                if have < need:
                    problems.append(
                        f"topic {name} has max.message.bytes={have}, the configured envelope "
                        f"limit needs {need}: raise it (kafka-configs --alter --entity-type "
                        f"topics --entity-name {name} --add-config max.message.bytes={need}) "
                        "or lower limits.max_envelope_bytes"
                    )
        if problems:
            raise ConfigError("\n".join(problems))

    async def _wait_for_partitions(self, topic: str, partitions: int, timeout: float = 30) -> None:
        _, producer, _ = self._started()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            parts = await producer.partitions_for(topic)
            if parts and len(parts) >= partitions:
                return
            if loop.time() > deadline:
                raise BackendUnavailable(f"topic {topic} has no leaders after {timeout:.0f} s")
            await asyncio.sleep(0.1)

    async def _wait_for_leaders(self, topics: Sequence[str], timeout: float = 30) -> None:
        """New partitions answer ListOffsets only once their leader is ready."""
        _, _, consumer = self._started()
        tps = [_ktp(tp) for tp in await self.partitions_of(topics)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                async with self._random_lock:
                    await consumer.end_offsets(tps)
                return
            except KafkaError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def partitions_of(self, topics: Sequence[str]) -> list[TopicPartition]:
        _, producer, _ = self._started()
        out = []
        try:
            for topic in topics:
                out.extend(
                    TopicPartition(topic, p) for p in sorted(await producer.partitions_for(topic))
                )
        except KafkaError as exc:
            raise _wrap(exc, "partitions") from exc
        return out

    # -- appending

    async def append(self, records: Sequence[NewRecord]) -> list[Position]:
        _, producer, _ = self._started()
        if not records:
            return []
        try:
            if len(records) == 1:
                r = records[0]
                fut = await producer.send(
                    r.topic, r.value, key=r.key, headers=list(r.headers), partition=r.partition
                )
                md = await fut
                return [Position(md.topic, md.partition, md.offset)]
            return await self._append_atomically(records)
        except KafkaError as exc:
            raise _wrap(exc, "append") from exc

    async def _append_atomically(self, records: Sequence[NewRecord]) -> list[Position]:
        async with self._txn_lock:
            if self._txn_producer is None:
                producer = self.transactional_producer(
                    f"{self.settings.client_id}.append.{self.instance}"
                )
                await producer.start()
                self._txn_producer = producer
            producer = self._txn_producer
            try:
                async with producer.transaction():
                    metas = await _send_all(producer, records)
            except KafkaError:
                self._txn_producer = None
                with contextlib.suppress(KafkaError):
                    await producer.stop()
                raise
            return [Position(m.topic, m.partition, m.offset) for m in metas]

    # -- reading

    def group_consumer(
        self, group: str, topics: Sequence[str], *, max_batch_bytes: int | None = None
    ) -> GroupConsumer:
        return KafkaGroupConsumer(self, group, list(topics))

    def tailer(
        self,
        topics: Sequence[str],
        positions: Mapping[TopicPartition, int],
        *,
        only: Collection[TopicPartition] | None = None,
    ) -> Tailer:
        return KafkaTailer(self, list(topics), dict(positions), only)

    async def partition_for(self, topic: str, key: bytes) -> int:
        parts = await self.partitions_of([topic])
        return DefaultPartitioner()(key, [tp.partition for tp in parts], [])

    async def read_at(self, topic: str, partition: int, offset: int) -> Record | None:
        _, _, consumer = self._started()
        ktp = KafkaTP(topic, partition)
        async with self._random_lock:
            try:
                # A transaction's markers land just after its commit returns: give the
                # last stable offset a moment to pass a record that was just appended.
                loop = asyncio.get_running_loop()
                settle = loop.time() + 2
                while offset >= (await consumer.end_offsets([ktp]))[ktp]:
                    if loop.time() > settle:
                        return None
                    await asyncio.sleep(0.05)
                consumer.assign([ktp])
                consumer.seek(ktp, offset)
                deadline = loop.time() + 10
                while loop.time() < deadline:
                    batch = await consumer.getmany(ktp, timeout_ms=1000, max_records=1)
                    for msg in batch.get(ktp, ()):
                        return _record(msg) if msg.offset == offset else None
                    if await consumer.position(ktp) > offset:
                        return None  # that offset held an aborted or control record
                return None
            except KafkaError as exc:
                raise _wrap(exc, "read") from exc

    async def end_offsets(self, topics: Sequence[str]) -> dict[TopicPartition, int]:
        _, _, consumer = self._started()
        tps = await self.partitions_of(topics)
        async with self._random_lock:
            try:
                ends = await consumer.end_offsets([_ktp(tp) for tp in tps])
            except KafkaError as exc:
                raise _wrap(exc, "end offsets") from exc
        return {_tp(k): v for k, v in ends.items()}

    async def ping(self) -> None:
        admin, _, _ = self._started()
        try:
            async with asyncio.timeout(5):
                await admin.describe_cluster()
        except (KafkaError, TimeoutError) as exc:
            raise _wrap(exc, "ping") from exc


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
        except KafkaError as exc:
            raise _wrap(exc, f"join group {self.group}") from exc

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
        if producer is not None:
            with contextlib.suppress(KafkaError):
                await producer.stop()

    async def _open_partition(self, tp: TopicPartition) -> None:
        """Fence the previous owner, then start from the group's committed offset."""
        assert self._consumer is not None
        producer = self.log_.transactional_producer(self._txn_id(tp))
        await producer.start()  # init_transactions: completes or aborts the old owner's txn
        try:
            await self._seek_committed(tp)
        except BaseException:
            with contextlib.suppress(KafkaError):
                await producer.stop()
            raise
        # Only now may poll hand out records of tp (it filters on this mapping).
        self._producers[tp] = producer

    async def _seek_committed(self, tp: TopicPartition) -> None:
        assert self._consumer is not None
        ktp = _ktp(tp)
        committed = await self._consumer.committed(ktp)
        if committed is None:
            committed = 0  # from the start; auto_offset_reset=earliest if it was deleted
        self._consumer.seek(ktp, committed)
        self._committed[tp] = committed

    # ConsumerRebalanceListener
    async def on_partitions_revoked(self, revoked: Any) -> None:
        for ktp in revoked:
            tp = _tp(ktp)
            async with self._lock(tp):
                await self._close_producer(tp)
        if revoked:
            log.info(
                "partitions revoked",
                group=self.group,
                partitions=sorted(map(str, map(_tp, revoked))),
            )

    async def on_partitions_assigned(self, assigned: Any) -> None:
        new = [_tp(k) for k in assigned if _tp(k) not in self._producers]
        await asyncio.gather(*(self._open_partition(tp) for tp in new))
        if new:
            log.info("partitions assigned", group=self.group, partitions=sorted(map(str, new)))

    def _lock(self, tp: TopicPartition) -> asyncio.Lock:
        return self._locks.setdefault(tp, asyncio.Lock())

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._producers)

    def _owned_ktps(self, tps: Collection[TopicPartition]) -> list[Any]:
        assigned = self._consumer.assignment() if self._consumer is not None else set()
        return [k for k in map(_ktp, tps) if k in assigned]

    def pause(self, tps: Collection[TopicPartition]) -> None:
        if self._consumer is not None:
            self._consumer.pause(*self._owned_ktps(tps))

    def resume(self, tps: Collection[TopicPartition]) -> None:
        if self._consumer is not None:
            self._consumer.resume(*self._owned_ktps(tps))

    async def poll(
        self, timeout: float, max_records: int
    ) -> Mapping[TopicPartition, Sequence[Record]]:
        data = await _getmany(self._consumer, timeout, max_records, "poll")
        out: dict[TopicPartition, list[Record]] = {}
        for ktp, msgs in data.items():
            tp = _tp(ktp)
            if tp in self._producers and msgs:
                out[tp] = [_record(m) for m in msgs]
        return out

    async def commit(
        self,
        tp: TopicPartition,
        next_offset: int,
        outputs: Sequence[NewRecord] = (),
        *,
        before_commit: BeforeCommitHook | None = None,
    ) -> list[Position]:
        async with self._lock(tp):
            producer = self._producers.get(tp)
            if producer is None:
                raise Fenced(f"{tp} is not assigned to this member")
            try:
                await producer.begin_transaction()
                metas = await _send_all(producer, outputs)
                await producer.send_offsets_to_transaction({_ktp(tp): next_offset}, self.group)
                if before_commit is not None:
                    before_commit()
                await producer.commit_transaction()
            except ProducerFenced as exc:
                await self._close_producer(tp)
                raise Fenced(f"{tp}: fenced by a newer owner") from exc
            except KafkaError as exc:
                # The transaction's fate may be unknown (a timeout): a fresh producer's
                # init_transactions settles it, then the committed offset tells the truth.
                await self._reset(tp)
                raise _wrap(exc, f"commit {tp}") from exc
            self._committed[tp] = next_offset
            return [Position(m.topic, m.partition, m.offset) for m in metas]

    async def _reset(self, tp: TopicPartition) -> None:
        await self._close_producer(tp)
        try:
            await self._open_partition(tp)
        except KafkaError as exc:
            log.warning("partition reset failed", partition=str(tp), error=str(exc))

    async def rewind(self, tp: TopicPartition) -> None:
        if self._consumer is not None and tp in self._committed:
            self._consumer.seek(_ktp(tp), self._committed[tp])


class KafkaTailer(Tailer):
    """Every partition of some topics, read_committed, from remembered positions."""

    def __init__(
        self,
        log_: KafkaLog,
        topics: list[str],
        positions: dict[TopicPartition, int],
        only: Collection[TopicPartition] | None = None,
    ) -> None:
        self.log_ = log_
        self.topics = topics
        self._positions = positions
        self._only = frozenset(only) if only is not None else None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(**self.log_.consumer_kwargs(), group_id=None)
        try:
            await self._consumer.start()
            tps = [
                tp
                for tp in await self.log_.partitions_of(self.topics)
                if self._only is None or tp in self._only
            ]
            self._consumer.assign([_ktp(tp) for tp in tps])
            for tp in tps:
                # Offset 0 may be gone to retention: auto_offset_reset=earliest covers it.
                self._consumer.seek(_ktp(tp), self._positions.get(tp, 0))
        except KafkaError as exc:
            raise _wrap(exc, "tail") from exc

    async def close(self) -> None:
        if self._consumer is not None:
            await _stop_consumer(self._consumer)
            self._consumer = None

    async def positions(self) -> dict[TopicPartition, int]:
        if self._consumer is None:
            raise BackendUnavailable("tailer is not started")
        try:
            return {_tp(k): await self._consumer.position(k) for k in self._consumer.assignment()}
        except KafkaError as exc:
            raise _wrap(exc, "tail position") from exc

    async def poll(self, timeout: float, max_records: int) -> Sequence[Record]:
        data = await _getmany(self._consumer, timeout, max_records, "tail poll")
        out = []
        for msgs in data.values():
            for m in msgs:
                out.append(_record(m))
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
