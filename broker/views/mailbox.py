"""The mailbox view: a read model of the `mailbox` and `receipts` topics.

Each docbroker instance keeps its own view in a local SQLite file, built by
tailing every partition of both topics from the positions stored with it (so a
restart continues, and deleting the file rebuilds it from the log). The view
holds metadata and record positions; the envelope bytes stay in the log and are
read with `read_at` when a recipient fetches them, unless the view still holds them
in memory (recent and unacknowledged: `broker.views.mailbox_bodies`). The file, its positions and
its thread are a read model's (`broker.views.readmodel`), as for the document view;
the SQL is the store's (`broker.views.mailbox_store`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import structlog

from broker.clock import now_ms
from broker.core.logrecords import Position, Record
from broker.core.topics import Topics
from broker.directory.book import Directory
from broker.log.interface import DurableLog
from broker.views.backlog import AgencyBacklog, backlog_gauges
from broker.views.mailbox_bodies import DEFAULT_MAX_BYTES, RecentBodies
from broker.views.mailbox_store import Applied, Delivery, MailboxStore, Offsets
from broker.views.tailed import TailedView

__all__ = ["AgencyBacklog", "Delivery", "MailboxStore", "MailboxView", "MailboxViewMetrics"]

log = structlog.get_logger(__name__)

# -- the view


class MailboxViewMetrics(Protocol):
    """What the view reports (`broker.metrics.Metrics` has it)."""

    def acknowledged(self) -> None: ...

    def mailbox_state(self, pending: int, lag: int) -> None: ...

    def oldest_unacknowledged(self, seconds: float) -> None: ...

    def mailbox_backlog(self, by_agency: Mapping[str, tuple[int, float]]) -> None: ...


class MailboxView(TailedView[MailboxStore]):
    """Keeps a MailboxStore current from the log and answers mailbox queries. It
    serves while it catches up (a mailbox is read by cursor; a long poll waits)."""

    name = "mailbox view"
    catch_up_at_start = False

    def __init__(
        self,
        log_: DurableLog,
        topics: Topics,
        path: Path,
        metrics: MailboxViewMetrics,
        *,
        gauge_interval: float = 5.0,
        directory: Callable[[], Directory] = Directory,
        recent_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        """`directory`: the directory as of now; its agencies are the labels of the
        per-agency backlog gauges. `gauge_interval`: seconds between two reports of
        the gauges. `recent_bytes`: how many bytes of recent unacknowledged envelopes
        to keep for fetches (`broker.views.mailbox_bodies`)."""
        super().__init__(log_, topics, path, periodic_every=gauge_interval)
        self.metrics = metrics
        self.directory = directory
        self._waiters: dict[str, asyncio.Event] = {}
        self._released = False  # shutting down: long polls answer at once
        self._bodies = RecentBodies(recent_bytes)

    def _tail_topics(self) -> list[str]:
        return [self.topics.mailbox, self.topics.receipts]

    def _open_store(self) -> MailboxStore:
        return MailboxStore(self.path, self.topics.mailbox, self.topics.receipts)

    def _apply(self, store: MailboxStore, records: Sequence[Record]) -> Applied:
        return store.apply(records)

    async def _applied_records(self, records: Sequence[Record], result: Applied) -> None:
        for r in records:
            if r.topic == self.topics.mailbox and r.value is not None:
                self._bodies.keep(Position(r.topic, r.partition, r.offset), r.value)
        for at in result.acknowledged:
            self._bodies.drop(at)
        for _ in range(result.acks):
            self.metrics.acknowledged()
        for recipient in result.changed:
            self._wake(recipient)

    async def stop(self) -> None:
        self.wake_all()
        await super().stop()

    async def _periodic(self) -> None:
        """Pending entries and the lag, the oldest unacknowledged, the backlog per agency."""
        lag = await self._behind()
        pending = await self._thread.run(self._store_or_fail().pending_count)
        self.metrics.mailbox_state(pending, lag)
        oldest = await self._thread.run(self._store_or_fail().oldest_pending_ms)
        now = now_ms()
        self.metrics.oldest_unacknowledged(0 if oldest is None else max(0, now - oldest) / 1e3)
        await self._thread.run(self._report_backlog, self.directory(), now)

    def _report_backlog(self, directory: Directory, now: int) -> None:
        """The per-agency gauges (in the store's thread: a label per agency of the
        directory is a few hundred gauge updates, kept off the event loop)."""
        backlog = self._store_or_fail().pending_by_agency()
        gauges = backlog_gauges(backlog, directory, now)
        self.metrics.mailbox_backlog({k: (g.pending, g.oldest_seconds) for k, g in gauges.items()})

    def _wake(self, recipient: str) -> None:
        event = self._waiters.pop(recipient, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        """Release every long poll, and answer later ones at once (on shutdown: the
        server waits for in-flight requests, and a poll would hold it for its `wait`)."""
        self._released = True
        for event in self._waiters.values():
            event.set()
        self._waiters.clear()

    async def list(
        self,
        recipient: str,
        *,
        after: int = 0,
        limit: int = 100,
        include_acked: bool = False,
        kind: str | None = None,
        wait: float = 0.0,
    ) -> list[Delivery]:
        """Entries after the cursor (of `kind` when given); with `wait`, a long poll
        until one arrives."""
        store = self._store_or_fail()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            event = self._waiters.setdefault(recipient, asyncio.Event())
            found = await self._thread.run(
                store.list,
                recipient,
                after=after,
                limit=limit,
                include_acked=include_acked,
                kind=kind,
            )
            remaining = deadline - loop.time()
            if found or remaining <= 0 or self._released or not self.ready:
                return found
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await event.wait()

    def recent_body(self, d: Delivery) -> bytes | None:
        """The entry's envelope if the view still holds it (recent, unacknowledged):
        no read of the log needed."""
        return self._bodies.get(Position(d.topic, d.partition, d.offset))

    async def get(self, recipient: str, message_id: str) -> Delivery | None:
        return await self._thread.run(self._store_or_fail().get, recipient, message_id)

    async def retained(self, acked_before_ms: int) -> tuple[Offsets, Offsets]:
        """`MailboxStore.retained`, off the event loop."""
        return await self._thread.run(self._store_or_fail().retained, acked_before_ms)

    async def pending_by_agency(self) -> list[AgencyBacklog]:
        """Each recipient with unacknowledged entries, the longest waiting first
        (`MailboxStore.pending_by_agency`, off the event loop)."""
        return await self._thread.run(self._store_or_fail().pending_by_agency)

    async def count_pending(self, recipient: str, kind: str | None = None) -> int:
        """Unacknowledged entries of one recipient, of `kind` when given."""
        return await self._thread.run(self._store_or_fail().count_pending, recipient, kind)
