"""The topics docbroker uses, named with the configured prefix."""

from __future__ import annotations

from dataclasses import dataclass

from broker.config import Settings
from broker.log.interface import TopicSpec


@dataclass(frozen=True, slots=True)
class Topics:
    """Full topic names. Keys: mailbox = recipient code, events = document id."""

    inbound: str  # raw submissions, as the sender's bytes
    mailbox: str  # deliveries to local agencies
    upstream: str  # to the national axis
    rejected: str  # dead letters, with their problems
    events: str  # audit trail of every state change
    acks: str  # acknowledgements by recipients

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(**{name: f"{prefix}{name}" for name in cls.__dataclass_fields__})

    def all(self) -> list[str]:
        return [getattr(self, name) for name in self.__dataclass_fields__]


def topic_specs(settings: Settings, topics: Topics) -> list[TopicSpec]:
    """Every topic with the configured partitions and the envelope size limit."""
    return [
        TopicSpec(name, settings.backend.partitions, settings.max_record_bytes)
        for name in topics.all()
    ]
