"""The dedup index, followed from the compacted `dedup` topic by every instance.

- (sender, DocumentId) -> the first submission of a new document: when, as which
  message, its bytes' SHA-256. The door writes a *claim* in the same atomic append
  as the submission, so a resend that arrives while the first is still in flight
  is recognised (at once by the instance that took it, after the follow lag by the
  others); the pipeline writes the entry again when it commits the document.
- (caller, Idempotency-Key) -> the request's SHA-256 and the message id it was
  answered with, appended with the submission: a retry with the same key at any
  instance gets the first answer.
- SDK request nonces seen (for clients that sign one), so that a replay to another
  instance is refused too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

from broker.core.logrecords import NewRecord, Record
from broker.core.records import FirstSeen
from broker.log.interface import DurableLog
from broker.state.followed import FollowedTopic

DEDUP_SEPARATOR = "\x1f"
NONCE_PREFIX = "@nonce:"  # key `@nonce:<system><SEP><nonce>`
IDEMPOTENCY_PREFIX = "@idem:"  # key `@idem:<caller><SEP><Idempotency-Key>`


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """What an Idempotency-Key was first used for."""

    request_sha256: str
    message_id: str


class DedupIndex:
    """The first submission of each (sender, DocumentId), idempotency keys, nonces."""

    def __init__(self, log_: DurableLog, topic: str, window_ms: int) -> None:
        self.topic = topic
        self.window_ms = window_ms
        self.first: dict[tuple[str, str], FirstSeen] = {}
        self.idempotency: dict[tuple[str, str], IdempotentRequest] = {}
        self.nonces: dict[tuple[str, str], int] = {}
        # Submissions whose append has not settled, by (sender, DocumentId) and by
        # (caller, Idempotency-Key): this instance's own, not yet in the index.
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
                at, str(value.get("message_id") or ""), str(value.get("sha256") or "")
            )
            self.remember([(key[0], key[1])], first)
            idem = value.get("idempotency")
            if isinstance(idem, dict) and idem.get("caller") and idem.get("key"):
                slot = (str(idem["caller"]), str(idem["key"]))
                request = IdempotentRequest(str(idem.get("request_sha256") or ""), first.message_id)
                self.idempotency.setdefault(slot, request)

    def remember(self, keys: Sequence[tuple[str, str]], first: FirstSeen) -> None:
        """The first entry of a key stays (a later one is the same document again)."""
        for key in keys:
            self.first.setdefault(key, first)

    def lookup(self, sender: str, document_id: str) -> FirstSeen | None:
        """Read from worker threads: a dict lookup, safe under the GIL."""
        return self.first.get((sender, document_id))

    def record(self, key: tuple[str, str], first: FirstSeen) -> NewRecord:
        """The entry of a new document: the door's claim, the pipeline's when it commits."""
        body = {
            "first_seen_ms": first.at_ms,
            "message_id": first.message_id,
            "sha256": first.sha256,
        }
        return NewRecord(
            self.topic, json.dumps(body).encode(), key=DEDUP_SEPARATOR.join(key).encode()
        )

    def idempotency_record(
        self, caller: str, key: str, request: IdempotentRequest, at_ms: int
    ) -> NewRecord:
        """What an Idempotency-Key was used for, for every instance to see."""
        body = {
            "first_seen_ms": at_ms,
            "message_id": request.message_id,
            "sha256": request.request_sha256,
        }
        raw_key = f"{IDEMPOTENCY_PREFIX}{caller}{DEDUP_SEPARATOR}{key}"
        return NewRecord(self.topic, json.dumps(body).encode(), key=raw_key.encode())

    def nonce_record(self, system_id: str, nonce: str, at_ms: int) -> NewRecord:
        self.nonces.setdefault((system_id, nonce), at_ms)
        key = f"{NONCE_PREFIX}{system_id}{DEDUP_SEPARATOR}{nonce}"
        value = json.dumps({"first_seen_ms": at_ms}).encode()
        return NewRecord(self.topic, value, key=key.encode())

    def nonce_seen(self, system_id: str, nonce: str, since_ms: int) -> bool:
        at = self.nonces.get((system_id, nonce))
        return at is not None and at >= since_ms
