"""The durable log's records as plain values: what is appended, what is read back,
where it landed. The interface that moves them is broker.log.interface."""

from __future__ import annotations

from dataclasses import dataclass

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How a topic is created: partitions, compaction, largest record."""

    name: str
    partitions: int
    max_record_bytes: int
    compacted: bool = False


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record to append. `partition=None`: by key hash, or spread if no key."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Headers = ()
    partition: int | None = None

    @property
    def size(self) -> int:
        return (
            len(self.value or b"")
            + len(self.key or b"")
            + sum(len(k) + len(v) for k, v in self.headers)
        )


@dataclass(frozen=True, slots=True)
class Record:
    """A record read back from a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        """The last value of header `name`, or None."""
        found = None
        for k, v in self.headers:
            if k == name:
                found = v
        return found

    def header_str(self, name: str, default: str = "") -> str:
        raw = self.header(name)
        return raw.decode("utf-8", "replace") if raw is not None else default


@dataclass(frozen=True, slots=True)
class Position:
    """Where an appended record landed."""

    topic: str
    partition: int
    offset: int
