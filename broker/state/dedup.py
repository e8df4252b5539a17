"""The dedup index: (sender, DocumentId) -> when first received, followed from the
compacted `dedup` topic."""

from __future__ import annotations

import json
from collections.abc import Sequence

from broker.core.logrecords import NewRecord, Record
from broker.log.interface import DurableLog
from broker.state.followed import FollowedTopic

DEDUP_SEPARATOR = "\x1f"


class DedupIndex:
    """(sender, DocumentId) -> when first received (and as which message), for the
    duplicate window."""

    def __init__(self, log_: DurableLog, topic: str, window_ms: int) -> None:
        self.topic = topic
        self.window_ms = window_ms
        self.first_seen: dict[tuple[str, str], int] = {}
        self.message_ids: dict[tuple[str, str], str] = {}
        self.follower = FollowedTopic(log_, topic, self._apply, "dedup index")

    def _apply(self, records: Sequence[Record]) -> None:
        for record in records:
            key = (record.key or b"").decode().split(DEDUP_SEPARATOR, 1)
            if len(key) != 2 or not record.value:
                continue
            value = json.loads(record.value)
            at = int(value.get("first_seen_ms", record.timestamp_ms))
            self.remember([(key[0], key[1])], at, str(value.get("message_id") or ""))

    def remember(self, keys: Sequence[tuple[str, str]], at_ms: int, message_id: str = "") -> None:
        for key in keys:
            self.first_seen.setdefault(key, at_ms)
            if message_id:
                self.message_ids.setdefault(key, message_id)

    def lookup(self, sender: str, document_id: str) -> int | None:
        """Read from worker threads: a dict lookup, safe under the GIL."""
        return self.first_seen.get((sender, document_id))

    def record(self, key: tuple[str, str], at_ms: int, message_id: str) -> NewRecord:
        value = json.dumps({"first_seen_ms": at_ms, "message_id": message_id}).encode()
        return NewRecord(self.topic, value, key=DEDUP_SEPARATOR.join(key).encode())
