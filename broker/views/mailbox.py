"""The mailbox view: a read model of the `mailbox` and `receipts` topics.

Each docbroker instance keeps its own view in a local SQLite file, built by
tailing every partition of both topics from the positions stored with it (so a
restart continues, and deleting the file rebuilds it from the log). The view
holds metadata and record positions; the envelope bytes stay in the log and are
read with `read_at` when a recipient fetches them. The file, its positions and
its thread are a read model's (`broker.views.readmodel`), as for the document view;
the SQL is the store's (`broker.views.mailbox_store`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Protocol

import structlog

from broker.clock import now_ms
from broker.core.errors import BackendUnavailable, StorageFull
from broker.core.logrecords import Position
from broker.core.topics import Topics
from broker.directory.book import Directory
from broker.log.interface import DurableLog, Tailer
from broker.log.sqlite_space import FullDisk, is_full, storage_full
from broker.views.backlog import AgencyBacklog, backlog_gauges
from broker.views.mailbox_store import Delivery, MailboxStore, Offsets
from broker.views.readmodel import AppliedPositions, StoreThread

__all__ = ["AgencyBacklog", "Delivery", "MailboxStore", "MailboxView", "MailboxViewMetrics"]

log = structlog.get_logger(__name__)

# -- the view


class MailboxViewMetrics(Protocol):
    """What the view reports (`broker.metrics.Metrics` has it)."""

    def acknowledged(self) -> None: ...

    def mailbox_state(self, pending: int, lag: int) -> None: ...

    def oldest_unacknowledged(self, seconds: float) -> None: ...

    def mailbox_backlog(self, by_agency: Mapping[str, tuple[int, float]]) -> None: ...


class MailboxView:
    """Keeps a MailboxStore current from the log and answers mailbox queries."""

    def __init__(
        self,
        log_: DurableLog,
        topics: Topics,
        path: Path,
        metrics: MailboxViewMetrics,
        *,
        gauge_interval: float = 5.0,
        directory: Callable[[], Directory] = Directory,
    ) -> None:
        """`directory`: the directory as of now; its agencies are the labels of the
        per-agency backlog gauges."""
        self.log_ = log_
        self.topics = topics
        self.path = path
        self.metrics = metrics
        self.gauge_interval = gauge_interval  # seconds between two reports of the gauges
        self.directory = directory
        self._thread = StoreThread("mailbox-view")
        self._store: MailboxStore | None = None
        self._tailer: Tailer | None = None
        self._task: asyncio.Task[None] | None = None
        self._applied = AppliedPositions()
        self._waiters: dict[str, asyncio.Event] = {}
        self._released = False  # shutting down: long polls answer at once
        self._ready = False
        self._space = FullDisk("mailbox view", path)

    @property
    def ready(self) -> bool:
        """Started and following the log (it may still be catching up)."""
        return self._ready

    def health(self) -> str:
        """ "ok", or why the view cannot keep up now (for /readyz)."""
        if not self._ready:
            return "not started"
        full = self._space.problem
        return str(full) if full is not None else "ok"

    @property
    def _topics(self) -> list[str]:
        return [self.topics.mailbox, self.topics.receipts]

    async def start(self) -> None:
        """Open the store and the tailer, then follow the log in a task."""
        try:
            self._store = await self._thread.run(
                MailboxStore, self.path, self.topics.mailbox, self.topics.receipts
            )
            await self._open_tailer()
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._follow(), name="mailbox-view")
        self._ready = True

    async def stop(self) -> None:
        self._ready = False
        self.wake_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_tailer()
        if self._store is not None:
            await self._thread.run(self._store.close)
            self._store = None
        self._thread.shutdown()

    async def _open_tailer(self) -> None:
        """A tailer from the stored positions (the records after them are not applied)."""
        positions = await self._thread.run(self._store_or_fail().positions)
        self._applied.reset(positions)
        self._tailer = self.log_.tailer(self._topics, positions)
        try:
            await self._tailer.start()
        except BaseException:
            await self._close_tailer()
            raise

    async def _close_tailer(self) -> None:
        if self._tailer is not None:
            tailer, self._tailer = self._tailer, None
            await tailer.close()

    def _tailing(self) -> Tailer:
        if self._tailer is None:
            raise BackendUnavailable("the mailbox view is not tailing the log")
        return self._tailer

    async def _apply_next(self) -> None:
        records = await self._tailing().poll(0.5, 500)
        if not records:
            return
        try:
            changed, acks = await self._thread.run(self._store_or_fail().apply, records)
        except Exception as exc:
            await self._close_tailer()  # so that they are read again from the stored positions
            if is_full(exc):
                full = storage_full(self.path, exc)
                self._space.failed(full)
                raise full from exc
            raise
        self._space.wrote()
        for _ in range(acks):
            self.metrics.acknowledged()
        await self._applied.advance(records)
        for recipient in changed:
            self._wake(recipient)

    async def _follow(self) -> None:
        """Apply new records as they come. The log going away is waited out; an apply
        that fails (a full disk) restarts the tailer from the stored positions, so that
        no record is skipped."""
        backoff = 0.1
        refresh_at = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if self._tailer is None:
                    await self._open_tailer()
                await self._apply_next()
                if loop.time() >= refresh_at:
                    refresh_at = loop.time() + self.gauge_interval
                    await self._refresh_gauges()
                backoff = 0.1
            except StorageFull:  # warned once for the episode (FullDisk)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except BackendUnavailable as exc:
                log.warning("mailbox view: log unavailable", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("mailbox view: step failed; retrying", retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _refresh_gauges(self) -> None:
        """Pending entries, and the lag from the tailer's positions: on Kafka they skip
        the transaction markers after the last record, so a caught-up view reports 0."""
        ends = await self.log_.end_offsets(self._topics)
        mine = await self._tailing().positions()
        lag = sum(max(0, end - mine.get(tp, 0)) for tp, end in ends.items())
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

    def _store_or_fail(self) -> MailboxStore:
        if self._store is None:
            raise BackendUnavailable("the mailbox view is not started")
        return self._store

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

    async def wait_applied(self, positions: Iterable[Position], timeout: float) -> bool:
        """Wait until the view has applied these positions (read your own writes);
        False on timeout."""
        return await self._applied.wait(positions, timeout)
