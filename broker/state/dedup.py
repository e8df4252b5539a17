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

What the topic said is kept in a SQLite file in the data folder (dedup_store), read
from the stored positions on at start (a restart reads only what came since) and
pruned of keys outside the window; what this instance remembered itself before the
follower applied it (its claims, its commits) is kept in memory until then.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import structlog

from broker.clock import now_ms
from broker.core.logrecords import NewRecord, Record, TopicPartition
from broker.core.records import FirstSeen
from broker.log.interface import DurableLog
from broker.state.dedup_store import DedupStore, Key
from broker.state.followed import FollowedTopic

log = structlog.get_logger(__name__)

DEDUP_SEPARATOR = "\x1f"
NONCE_PREFIX = "@nonce:"  # key `@nonce:<system><SEP><nonce>`
PRUNE_EVERY_MS = 600_000  # the store is pruned at open and then this often while applying


def kept(known: FirstSeen | None, new: FirstSeen | None) -> FirstSeen | None:
    """Of two entries of a key, `known` first: it stays, unless `new` is committed and
    it is a claim."""
    if known is None or (new is not None and new.committed and not known.committed):
        return new
    return known


class DedupIndex:
    """The first submission of each key, and the nonces seen."""

    def __init__(
        self,
        log_: DurableLog,
        topic: str,
        window_ms: int,
        path: Path | None = None,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.topic = topic
        self.window_ms = window_ms
        self.clock = clock
        self.path = path
        self.store: DedupStore | None = None  # opened when the follower starts
        # Remembered by this instance and not yet applied from the topic.
        self.recent: dict[Key, FirstSeen] = {}
        self.recent_nonces: dict[Key, int] = {}
        # This instance's submissions whose append has not settled, by key.
        self.pending: dict[Key, tuple[FirstSeen, asyncio.Future[object]]] = {}
        self._pruned_at = 0
        self.follower = FollowedTopic(log_, topic, self._apply, "dedup index", positions=self._open)

    def _open(self) -> dict[TopicPartition, int]:
        """Open the store (pruned) and say where to resume; in a thread, at start."""
        if self.store is None:
            self.store = DedupStore(self.path)
            self.prune()
        return self.store.positions()

    def _store(self) -> DedupStore:
        if self.store is None:
            raise RuntimeError("the dedup index is not started")
        return self.store

    async def _apply(self, records: Sequence[Record]) -> None:
        """Written in a thread (a SQLite transaction may take a while on a busy disk);
        what this instance remembered is let go of on the loop, where it is set."""
        firsts: list[tuple[Key, FirstSeen]] = []
        nonces: list[tuple[Key, int]] = []
        for record in records:
            key = (record.key or b"").decode().split(DEDUP_SEPARATOR, 1)
            if len(key) != 2 or not record.value:
                continue
            value = json.loads(record.value)
            at = int(value.get("first_seen_ms", record.timestamp_ms))
            if key[0].startswith(NONCE_PREFIX):
                nonces.append(((key[0][len(NONCE_PREFIX) :], key[1]), at))
                continue
            first = FirstSeen(
                at,
                str(value.get("message_id") or ""),
                str(value.get("sha256") or ""),
                committed=not value.get("claim", False),
            )
            firsts.append(((key[0], key[1]), first))
        await asyncio.to_thread(self._store().apply, firsts, nonces, records)
        for k, first in firsts:  # the store knows it now (unless ours is the better one)
            mine = self.recent.get(k)
            if mine is not None and (first.committed or not mine.committed):
                del self.recent[k]
        for k, _ in nonces:
            self.recent_nonces.pop(k, None)
        if self.clock() - self._pruned_at >= PRUNE_EVERY_MS:
            await asyncio.to_thread(self.prune)

    def prune(self) -> None:
        """Forget document keys and nonces first seen before the window."""
        now = self.clock()
        self._pruned_at = now
        keys, nonces = self._store().prune(now - self.window_ms)
        if keys or nonces:
            log.info("dedup index pruned", keys=keys, nonces=nonces)

    def remember(self, keys: Sequence[Key], first: FirstSeen) -> None:
        """The first entry of a key stays, but a committed one replaces a claim."""
        for key in keys:
            known = self.recent.get(key)
            if known is None or (first.committed and not known.committed):
                self.recent[key] = first

    def lookup(self, sender: str, document_id: str) -> FirstSeen | None:
        """The first submission of a key, committed or claimed (the door's question)."""
        key = (sender, document_id)
        return kept(self._store().get(key), self.recent.get(key))

    def committed(self, sender: str, document_id: str) -> FirstSeen | None:
        """The first submission the pipeline took in (the pipeline's question). Read
        from worker threads too (the store has its lock; a dict lookup is safe under
        the GIL)."""
        found = self.lookup(sender, document_id)
        return found if found is not None and found.committed else None

    def committed_many(self, keys: Iterable[Key]) -> dict[Key, FirstSeen]:
        """`committed` for many keys in one query: those that have an entry."""
        wanted = list(keys)
        stored = self._store().get_many(wanted)
        out = {}
        for key in wanted:
            found = kept(stored.get(key), self.recent.get(key))
            if found is not None and found.committed:
                out[key] = found
        return out

    def count(self) -> int:
        """Keys in the store (a scan: for the start-up log line)."""
        return self._store().count()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def record(self, key: Key, first: FirstSeen) -> NewRecord:
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
        self.recent_nonces.setdefault((system_id, nonce), at_ms)
        key = f"{NONCE_PREFIX}{system_id}{DEDUP_SEPARATOR}{nonce}"
        value = json.dumps({"first_seen_ms": at_ms}).encode()
        return NewRecord(self.topic, value, key=key.encode())

    def nonce_seen(self, system_id: str, nonce: str, since_ms: int) -> bool:
        key = (system_id, nonce)
        at = self._store().nonce_at(key)
        if at is None:
            at = self.recent_nonces.get(key)
        return at is not None and at >= since_ms
