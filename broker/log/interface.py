"""The durable log: one small interface, two backends (Kafka and embedded SQLite).

Everything docbroker knows lives in append-only topics. Three operations matter:

- `append` records atomically and durably (the HTTP 202 waits for it);
- read a topic as a member of a consumer group, partitions shared between members;
- commit a consumer's offset *together with* the records it produced
  (`GroupConsumer.commit`), so that a crash either shows both or neither.

Plus `Tailer` (read every partition from remembered positions, for read models)
and `read_at` (one record by position, for fetching a mailbox entry).

Retention (`broker.retention`) removes the oldest records of a partition with
`delete_before`; a partition then starts at its log start offset (`start_offsets`),
and reading below it finds nothing (`read_at` answers None, a tailer skips ahead).
The conformance suite in tests/conformance runs the same tests on both backends.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from broker.core.logrecords import (
    Headers,
    NewRecord,
    Position,
    Record,
    TopicPartition,
    TopicSpec,
)

__all__ = [
    "BeforeCommitHook",
    "DurableLog",
    "GroupConsumer",
    "Headers",
    "NewRecord",
    "Position",
    "Record",
    "Tailer",
    "TopicPartition",
    "TopicSize",
    "TopicSpec",
]

BeforeCommitHook = Callable[[], None]
"""Called after a transaction's records are written and before it commits.

Fault injection for the crash tests (kill -9 between produce and commit); None in
production."""


class GroupConsumer(abc.ABC):
    """A member of a consumer group: polls its partitions, commits transactionally.

    Contract: every batch returned by `poll` is committed (`commit`) or given up
    (`rewind`) before the next `poll`, so that reassignment happens between batches.

    Generations: a member's reading of a partition restarts from the committed
    offset whenever the partition is (re)assigned to it (even back to itself), is
    rewound, or a commit fails (other than `RecordTooLarge`). Each restart starts a
    new generation of that partition (`generation`); a member that queues polled
    records ahead of its commits passes the generation they were polled in to
    `commit`, which refuses them once it is over: they will be polled again, and
    must not be processed twice.
    """

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Leave the group; partitions go to the other members at once."""

    @abc.abstractmethod
    async def poll(
        self, timeout: float, max_records: int
    ) -> Mapping[TopicPartition, Sequence[Record]]:
        """Records of assigned partitions, in offset order per partition; {} on timeout.

        The records of a partition belong to its `generation` as read when `poll`
        returns (before the caller's next await)."""

    @abc.abstractmethod
    def generation(self, tp: TopicPartition) -> int | None:
        """The current generation of this member's reading of `tp` (it changes each
        time the reading restarts from the committed offset); None when not assigned."""

    @abc.abstractmethod
    async def commit(
        self,
        tp: TopicPartition,
        next_offset: int,
        outputs: Sequence[NewRecord] = (),
        *,
        generation: int | None = None,
        before_commit: BeforeCommitHook | None = None,
    ) -> list[Position]:
        """Atomically append `outputs` and set the group's offset of `tp` to `next_offset`.

        Raises `Fenced` when this member no longer owns `tp`, or when `generation`
        is given and is not `tp`'s current one (nothing is written either way);
        `RecordTooLarge` when an output exceeds its topic's limit (nothing is
        written, and the position and generation stay: the caller may commit the
        batch again without that output); `BackendUnavailable` on other failures
        (nothing is visible; the consumer rewinds `tp` to its committed offset so
        the records are polled again, in a new generation).
        """

    @abc.abstractmethod
    async def rewind(self, tp: TopicPartition) -> None:
        """Poll `tp` again from its committed offset (a new generation)."""

    @abc.abstractmethod
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member owns now."""

    @abc.abstractmethod
    def pause(self, tps: Collection[TopicPartition]) -> None:
        """Fetch nothing more of these (owned) partitions until `resume`: `poll` then
        keeps the membership alive without handing out records, for a member whose
        work waits (backpressure). A partition assigned anew starts unpaused."""

    @abc.abstractmethod
    def resume(self, tps: Collection[TopicPartition]) -> None:
        """Fetch these partitions again, from where their records stopped."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Tailer(abc.ABC):
    """Reads every partition of some topics from given positions, without a group.

    For read models that keep their own positions (the mailbox view): each
    instance of docbroker builds its view from all partitions.
    """

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def poll(self, timeout: float, max_records: int) -> Sequence[Record]:
        """Committed records after the current positions; [] on timeout."""

    @abc.abstractmethod
    async def positions(self) -> dict[TopicPartition, int]:
        """The next offset to read of every partition (past transaction markers on Kafka)."""

    async def caught_up(self, ends: Mapping[TopicPartition, int]) -> bool:
        """Whether everything before `ends` (from `DurableLog.end_offsets`) was read."""
        mine = await self.positions()
        return all(end == 0 or mine.get(tp, 0) >= end for tp, end in ends.items())

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@dataclass(frozen=True)
class TopicSize:
    """What a topic holds now: its records, and their bytes (key + value + headers)."""

    records: int
    bytes: int


class DurableLog(abc.ABC):
    """A backend of the durable log."""

    name: str

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; raises BackendUnavailable when the backend cannot be reached."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create missing topics; refuse existing ones whose limits are too small."""

    @abc.abstractmethod
    async def append(self, records: Sequence[NewRecord]) -> list[Position]:
        """Append atomically; returns when durable (Kafka acks=all, SQLite fsync)."""

    @abc.abstractmethod
    def group_consumer(
        self, group: str, topics: Sequence[str], *, max_batch_bytes: int | None = None
    ) -> GroupConsumer: ...

    @abc.abstractmethod
    def tailer(
        self,
        topics: Sequence[str],
        positions: Mapping[TopicPartition, int],
        *,
        only: Collection[TopicPartition] | None = None,
        lagging: bool = False,
    ) -> Tailer:
        """Positions are next offsets to read; partitions not named start at 0.
        `only` restricts the tailer to some partitions. `lagging`: a reader nobody
        waits on (a report's view) may wait a moment for fuller reads."""

    @abc.abstractmethod
    async def partition_for(self, topic: str, key: bytes) -> int:
        """The partition records with `key` go to (the backend's own partitioner)."""

    @abc.abstractmethod
    async def read_at(self, topic: str, partition: int, offset: int) -> Record | None:
        """The committed record at that position, or None."""

    @abc.abstractmethod
    async def end_offsets(self, topics: Sequence[str]) -> dict[TopicPartition, int]:
        """Next offset of every partition (last stable offset on Kafka)."""

    @abc.abstractmethod
    async def start_offsets(self, topics: Sequence[str]) -> dict[TopicPartition, int]:
        """First offset still held of every partition (its log start offset): 0 until
        `delete_before` removed records, the end offset when all were removed."""

    @abc.abstractmethod
    async def offsets_for_time(
        self, topics: Sequence[str], timestamp_ms: int
    ) -> dict[TopicPartition, int]:
        """Per partition, the first offset whose record's timestamp is `timestamp_ms` or
        later; the end offset when there is none."""

    @abc.abstractmethod
    async def committed_offsets(
        self, group: str, topics: Sequence[str]
    ) -> dict[TopicPartition, int]:
        """The next offset `group` will read of every partition (0 when it has not
        committed one)."""

    @abc.abstractmethod
    async def delete_before(
        self, offsets: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Remove every record below the given offset of each partition (an offset at or
        below the start removes nothing, one past the end is an error); returns the new
        start offsets. Kafka: DeleteRecords; embedded: the rows, and the space then."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise BackendUnavailable unless the backend answers now (readiness)."""

    async def topic_sizes(self) -> dict[str, TopicSize] | None:
        """Records and bytes held per topic, where the backend can tell cheaply; None
        where it cannot (Kafka: its brokers' log dirs say, see README "Sizing")."""
        return None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
