"""The topics docbroker uses, named with the configured prefix. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    """Full topic names and what they hold (key in brackets)."""

    inbound: str  # submissions as the sender's bytes [sender]
    mailbox: str  # deliveries to local agencies [recipient]
    upstream: str  # for the national axis [recipient]
    rejected: str  # dead letters with their problems [sender]
    events: str  # the audit trail, hash-chained [document id]
    receipts: str  # fetched / acknowledged by recipients [recipient]
    directory: str  # the agency directory, compacted [agency code]
    dedup: str  # documents already received, compacted [sender + document id]
    chains: str  # the head of each audit chain, compacted [chain id]
    archived: str  # how far each partition is in a signed archive, compacted [topic:partition]

    COMPACTED = ("directory", "dedup", "chains", "archived")

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(**{name: f"{prefix}{name}" for name in cls.__dataclass_fields__})

    def all(self) -> list[str]:
        return [getattr(self, name) for name in self.__dataclass_fields__]
