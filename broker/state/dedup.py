"""The dedup index, followed from the compacted `dedup` topic by every instance.

Keys: (sender, DocumentId) of a new document; (`@idem:<caller>`, Idempotency-Key) of
a submission that came with one. Each maps to the first submission (`FirstSeen`:
when, as which message, the SHA-256 of its bytes).

- The door appends a *claim* of each key in the same atomic append as the submission
  (`committed` false), so that a resend arriving while the first is on its way is
  recognised: at once by the instance that took it, after the follow lag by others.
- The pipeline appends the entry again when it commits the submission (`committed`
  true). Only committed entries decide what is a duplicate (the pipeline takes each
  partition in order, so exactly one submission of a key is first); a committed entry
  replaces a claim.
- SDK request nonces seen (for clients that sign one), so that a replay to another
  instance is refused too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from broker.core.logrecords import NewRecord, Record
from broker.core.records import FirstSeen
from broker.log.interface import DurableLog
from broker.state.followed import FollowedTopic

DEDUP_SEPARATOR = "\x1f"
NONCE_PREFIX = "@nonce:"  # key `@nonce:<system><SEP><nonce>`


class DedupIndex:
    """The first submission of each key, and the nonces seen."""

    def __init__(self, log_: DurableLog, topic: str, window_ms: int) -> None:
        self.topic = topic
        self.window_ms = window_ms
        self.first: dict[tuple[str, str], FirstSeen] = {}
        self.nonces: dict[tuple[str, str], int] = {}
        # This instance's submissions whose append has not settled, by key.
        self.pending: dict[tuple[str, str], tuple[FirstSeen, asyncio.Future[object]]] = {}
        self.follower = FollowedTopic(log_, topic, self._apply, "dedup index")

    def _apply(self, records: Sequence[Record]) -> None:
        for record in records:
            key = (record.key or b"").decode().split(DEDUP_SEPARATOR, 1)
            if len(key) != 2 or not record.value:
                continue
            value = json.loads(record.value)
            at = int(value.get("first_seen_ms", record.timestamp_ms))
            if key[0].startswith(NONCE_PREFIX):
                self.nonces.setdefault((key[0][len(NONCE_PREFIX) :], key[1]), at)
                continue
            first = FirstSeen(
                at,
                str(value.get("message_id") or ""),
                str(value.get("sha256") or ""),
                committed=not value.get("claim", False),
            )
            self.remember([(key[0], key[1])], first)

    def remember(self, keys: Sequence[tuple[str, str]], first: FirstSeen) -> None:
        """The first entry of a key stays, but a committed one replaces a claim."""
        for key in keys:
            known = self.first.get(key)
            if known is None or (first.committed and not known.committed):
                self.first[key] = first

    def lookup(self, sender: str, document_id: str) -> FirstSeen | None:
        """The first submission of a key, committed or claimed (the door's question)."""
        return self.first.get((sender, document_id))

    def committed(self, sender: str, document_id: str) -> FirstSeen | None:
        """The first submission the pipeline took in (the pipeline's question). Read
        from worker threads: a dict lookup, safe under the GIL."""
        found = self.first.get((sender, document_id))
        return found if found is not None and found.committed else None

    def record(self, key: tuple[str, str], first: FirstSeen) -> NewRecord:
        """The entry of a key: the door's claim (`first.committed` false) or the
        pipeline's when it commits the submission."""
        body: dict[str, object] = {
            "first_seen_ms": first.at_ms,
            "message_id": first.message_id,
            "sha256": first.sha256,
        }
        if not first.committed:
            body["claim"] = True
        return NewRecord(
            self.topic, json.dumps(body).encode(), key=DEDUP_SEPARATOR.join(key).encode()
        )

    def nonce_record(self, system_id: str, nonce: str, at_ms: int) -> NewRecord:
        self.nonces.setdefault((system_id, nonce), at_ms)
        key = f"{NONCE_PREFIX}{system_id}{DEDUP_SEPARATOR}{nonce}"
        value = json.dumps({"first_seen_ms": at_ms}).encode()
        return NewRecord(self.topic, value, key=key.encode())

    def nonce_seen(self, system_id: str, nonce: str, since_ms: int) -> bool:
        at = self.nonces.get((system_id, nonce))
        return at is not None and at >= since_ms
