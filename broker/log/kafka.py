"""The Kafka backend of the durable log (aiokafka; only broker.log.kafka* import it).

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
- Reads by position take a consumer of a small pool (`backend.kafka.readers`,
  broker.log.kafka_readers) for their duration; offsets are asked of a consumer
  that is never assigned. Neither waits behind another read.

aiokafka errors are wrapped into docbroker's own (`raise ... from exc`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as KafkaTP
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaError,
    TopicAuthorizationFailedError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.protocol.metadata import MetadataRequest

from broker.config import KafkaSettings
from broker.core.errors import BackendUnavailable, ConfigError
from broker.core.logrecords import NewRecord, Position, Record, TopicPartition, TopicSpec
from broker.log.group_commit import GroupCommit
from broker.log.interface import DurableLog, GroupConsumer, Tailer
from broker.log.kafka_clients import KafkaClients
from broker.log.kafka_common import (
    TOPIC_ALREADY_EXISTS,
    fetch_committed,
    install_fenced_future_filter,
    kafka_tp,
    send_all,
    tp_of,
    wrapped,
)
from broker.log.kafka_consumers import KafkaGroupConsumer, KafkaTailer
from broker.log.kafka_readers import ReaderPool, fetch_one
from broker.log.kafka_security import (
    Refusals,
    SecretReader,
    check_login,
    no_secret,
    principal_of,
)
from broker.log.kafka_topics import (
    replication_warnings,
    retention_problems,
    size_problems,
    topic_configs,
)

log = structlog.get_logger(__name__)

PING_TIMEOUT, PING_PER_BROKER, COORDINATOR_WAIT = 5.0, 2.0, 15.0  # seconds
SETTLE_WAIT = 2.0  # seconds a read waits for a just-appended record's transaction to settle


class KafkaLog(KafkaClients, DurableLog):
    """The durable log on an Apache Kafka cluster."""

    name = "kafka"

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        max_record_bytes: int,
        instance: str,
        read_secret: SecretReader = no_secret,
    ) -> None:
        self.settings = settings
        self._read_secret = read_secret  # broker.keys.secrets.read_secret
        self.max_record_bytes = max_record_bytes
        self.instance = instance
        self._admin: AIOKafkaAdminClient | None = None
        self._producer: AIOKafkaProducer | None = None
        self._txn_producer: AIOKafkaProducer | None = None
        self._txn_lock = asyncio.Lock()
        self._group = GroupCommit(self._commit_transaction)
        # Offsets (ListOffsets) from a consumer never assigned: those requests keep no
        # state in it, so any number go on at once; reads take a consumer of the pool.
        self._offsets: AIOKafkaConsumer | None = None
        self._readers: ReaderPool | None = None
        self._written: dict[KafkaTP, int] = {}  # end of what this log appended itself
        self._commits: dict[tuple[str, TopicPartition], int] = {}  # what its members committed
        self._answered: int | None = None  # the broker that answered the last ping
        self._security: dict[str, Any] | None = None  # read once: it holds the secrets
        self.principal = principal_of(settings)
        self.refusals = Refusals()

    # -- lifecycle

    async def start(self) -> None:
        install_fenced_future_filter()
        try:
            await check_login(self.settings, self.common())
            self._admin = AIOKafkaAdminClient(**self.common())
            await self._admin.start()
            self._producer = AIOKafkaProducer(**self.producer_kwargs())
            await self._producer.start()
            self._offsets = AIOKafkaConsumer(**self.consumer_kwargs(), group_id=None)
            await self._offsets.start()
            self._readers = ReaderPool(
                lambda: AIOKafkaConsumer(**self.consumer_kwargs(), group_id=None),
                self.settings.readers,
            )
        except BaseException as exc:
            await asyncio.shield(self.close())  # failed or cancelled: nothing left open
            if isinstance(exc, KafkaError):
                where = f"Kafka at {self.settings.bootstrap_servers}"
                raise self.fail(exc, where, "Write") from exc
            raise

    async def close(self) -> None:
        if self._readers is not None:
            await self._readers.close()
        for client in (self._txn_producer, self._producer, self._offsets):
            if client is not None:
                with contextlib.suppress(KafkaError):
                    await client.stop()
        if self._admin is not None:
            with contextlib.suppress(KafkaError):
                await self._admin.close()
        self._admin = self._producer = self._txn_producer = self._offsets = None
        self._readers = None

    def _started(self) -> tuple[AIOKafkaAdminClient, AIOKafkaProducer, AIOKafkaConsumer]:
        if self._admin is None or self._producer is None or self._offsets is None:
            raise BackendUnavailable("the Kafka log is not started")
        return self._admin, self._producer, self._offsets

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
                    topic_configs=topic_configs(spec, min_insync_replicas=s.min_insync_replicas),
                )
                for spec in specs
                if spec.name not in existing
            ]
            if new:
                await self._warn_on_replication([t.name for t in new])
                resp = await admin.create_topics(new)
                for name, code, *rest in resp.topic_errors:
                    if code == TopicAuthorizationFailedError.errno:
                        raise self.fail(TopicAuthorizationFailedError(), "create", "Create", [name])
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
            raise self.fail(exc, "ensure topics", "Describe", [sp.name for sp in specs]) from exc

    async def _warn_on_replication(self, names: Sequence[str]) -> None:
        """Say so when the topics about to be created would not survive losing one of the
        cluster's brokers (the admin client's metadata lists the live ones)."""
        admin, _, _ = self._started()
        brokers = len((await admin.describe_cluster())["brokers"])
        s = self.settings
        for warning in replication_warnings(brokers, s.replication_factor, s.min_insync_replicas):
            log.warning(
                warning,
                brokers=brokers,
                replication_factor=s.replication_factor,
                min_insync_replicas=s.min_insync_replicas,
                topics=list(names),
            )

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
            for err, _msg, _rtype, name, entries in resp.resources:
                if err == TopicAuthorizationFailedError.errno:
                    raise self.fail(
                        TopicAuthorizationFailedError(), "describe", "DescribeConfigs", [name]
                    )
                spec = by_name.get(name)
                if spec is None:
                    continue
                configs = {e[0]: e[1] for e in entries}
                problems += size_problems(name, spec, configs)
                problems += retention_problems(name, configs)
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
        tps = [kafka_tp(tp) for tp in await self.partitions_of(topics)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
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
            raise self.fail(exc, "partitions", "Describe", topics) from exc
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
                return self._wrote([Position(md.topic, md.partition, md.offset)])
            return self._wrote(await self._append_atomically(records))
        except KafkaError as exc:
            raise self.fail(exc, "append", "Write", {r.topic for r in records}) from exc

    def _wrote(self, positions: list[Position]) -> list[Position]:
        """Remember the end of what this log appended itself (see end_offsets)."""
        for p in positions:
            k = KafkaTP(p.topic, p.partition)
            self._written[k] = max(self._written.get(k, 0), p.offset + 1)
        return positions

    async def _append_atomically(self, records: Sequence[NewRecord]) -> list[Position]:
        """All or none of `records`, in a transaction it may share with other callers'
        (broker.log.group_commit: one transaction at a time capped the door's rate)."""
        return await self._group.append(records)

    def _append_txn_id(self) -> str:
        return f"{self.settings.client_id}.append.{self.instance}"

    async def _commit_transaction(self, records: Sequence[NewRecord]) -> list[Position]:
        async with self._txn_lock:
            if self._txn_producer is None:
                producer = self.transactional_producer(self._append_txn_id())
                try:
                    await producer.start()
                except KafkaError as exc:
                    with contextlib.suppress(KafkaError):
                        await producer.stop()
                    raise self.fail(
                        exc, "append", "Write", {r.topic for r in records},
                        txn_id=self._append_txn_id(),
                    ) from exc  # fmt: skip
                self._txn_producer = producer
            producer = self._txn_producer
            try:
                async with producer.transaction():
                    metas = await send_all(producer, records)
            except KafkaError as exc:
                self._txn_producer = None
                with contextlib.suppress(KafkaError):
                    await producer.stop()
                raise self.fail(
                    exc, "append", "Write", {r.topic for r in records}, txn_id=self._append_txn_id()
                ) from exc
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
        lagging: bool = False,
    ) -> Tailer:
        return KafkaTailer(self, list(topics), dict(positions), only, lagging=lagging)

    async def partition_for(self, topic: str, key: bytes) -> int:
        parts = await self.partitions_of([topic])
        return DefaultPartitioner()(key, [tp.partition for tp in parts], [])

    async def read_at(self, topic: str, partition: int, offset: int) -> Record | None:
        """The record at `offset`; None past the end, or for an aborted or control
        record. Reads go on side by side (ReaderPool); waiting for the last stable
        offset holds no reader."""
        _, _, offsets = self._started()
        assert self._readers is not None
        ktp = KafkaTP(topic, partition)
        try:
            # A transaction's markers land just after its commit returns: give the
            # last stable offset a moment to pass a record that was just appended.
            loop = asyncio.get_running_loop()
            settle = loop.time() + SETTLE_WAIT
            while offset >= (await offsets.end_offsets([ktp]))[ktp]:
                if loop.time() > settle:
                    return None
                await asyncio.sleep(0.05)
            return await self._readers.read(lambda consumer: fetch_one(consumer, ktp, offset))
        except KafkaError as exc:
            raise self.fail(exc, "read", "Read", [topic]) from exc

    async def end_offsets(self, topics: Sequence[str]) -> dict[TopicPartition, int]:
        """The last stable offsets, past everything this log appended itself: a
        transaction's markers land just after its commit returns, and a caller that
        just appended (then asks where the end is, to read up to it) must find its own
        records before the end."""
        _, _, consumer = self._started()
        tps = [kafka_tp(tp) for tp in await self.partitions_of(topics)]
        loop = asyncio.get_running_loop()
        settle = loop.time() + SETTLE_WAIT
        try:
            ends = await consumer.end_offsets(tps)
            while loop.time() < settle and any(ends[k] < self._written.get(k, 0) for k in tps):
                await asyncio.sleep(0.01)
                ends = await consumer.end_offsets(tps)
        except KafkaError as exc:
            raise self.fail(exc, "end offsets", "Describe", topics) from exc
        return {tp_of(k): v for k, v in ends.items()}

    # -- retention

    async def start_offsets(self, topics: Sequence[str]) -> dict[TopicPartition, int]:
        _, _, consumer = self._started()
        tps = await self.partitions_of(topics)
        try:
            starts = await consumer.beginning_offsets([kafka_tp(tp) for tp in tps])
        except KafkaError as exc:
            raise wrapped(exc, "start offsets") from exc
        return {tp_of(k): v for k, v in starts.items()}

    async def offsets_for_time(
        self, topics: Sequence[str], timestamp_ms: int
    ) -> dict[TopicPartition, int]:
        _, _, consumer = self._started()
        ends = await self.end_offsets(topics)
        try:
            found = await consumer.offsets_for_times({kafka_tp(tp): timestamp_ms for tp in ends})
        except KafkaError as exc:
            raise wrapped(exc, "offsets for time") from exc
        out = {}
        for tp, end in ends.items():
            at = found.get(kafka_tp(tp))
            out[tp] = end if at is None else min(at.offset, end)
        return out

    async def committed_offsets(
        self, group: str, topics: Sequence[str]
    ) -> dict[TopicPartition, int]:
        """What `group` committed; past what this log's members committed themselves (a
        transactional offset commit shows a moment after commit_transaction returns)."""
        tps = await self.partitions_of(topics)
        loop = asyncio.get_running_loop()
        settle = loop.time() + SETTLE_WAIT
        while True:
            out = await fetch_committed(self._started()[0], group, tps, COORDINATOR_WAIT)
            if loop.time() > settle or all(
                out[tp] >= self._commits.get((group, tp), 0) for tp in tps
            ):
                return out
            await asyncio.sleep(0.05)

    def committed_here(self, group: str, tp: TopicPartition, offset: int) -> None:
        """A member of this log committed `offset` for `tp` (see committed_offsets)."""
        self._commits[(group, tp)] = offset  # a rewind commits less: the latest counts

    async def delete_before(
        self, offsets: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        admin, _, _ = self._started()
        if not offsets:
            return {}
        try:
            lows = await admin.delete_records(
                {kafka_tp(tp): RecordsToDelete(offset) for tp, offset in offsets.items()},
                timeout_ms=self.settings.request_timeout_ms,
            )
        except KafkaError as exc:
            raise self.fail(exc, "delete records", "Delete", [tp.topic for tp in offsets]) from exc
        return {tp_of(k): v for k, v in lows.items()}

    async def ping(self) -> None:
        """The cluster answers: one of its brokers answers a Metadata request (no topics).

        The brokers are asked in turn, the one that answered last first, each for a
        short while: a broker lost or cut off among several leaves the cluster, and so
        this instance, ready (the admin client's own requests go to a broker at random,
        which would make /readyz flap while a dead one is still listed).
        """
        admin, _, _ = self._started()
        refused = self.refusals.current()
        if refused:
            raise BackendUnavailable("; ".join(refused))
        client = admin._client  # the admin client's connections (aiokafka's AIOKafkaClient)
        nodes = sorted((b.nodeId for b in client.cluster.brokers()), key=self._ping_order)
        tried: list[str] = []
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                for node in nodes:
                    try:
                        async with asyncio.timeout(PING_PER_BROKER):
                            await client.send(node, MetadataRequest([]))
                        self._answered = node
                        return
                    except (KafkaError, TimeoutError) as exc:
                        tried.append(f"broker {node}: {exc.__class__.__name__}")
                await admin.describe_cluster()  # none known yet, or none answered
                return
        except (KafkaError, TimeoutError) as exc:
            tried.append(f"{exc.__class__.__name__}: {exc}")
        raise BackendUnavailable("ping: no Kafka broker answered (" + "; ".join(tried) + ")")

    def _ping_order(self, node: int) -> tuple[bool, int]:
        return node != self._answered, node
