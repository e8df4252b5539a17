"""The statistics view: counters kept as traffic flows, by tailing the `events` topic.

Three layers, like the document view: `stats_fold` (an event -> its effects, pure),
`StatisticsStore` (the aggregate tables in a SQLite file, applied exactly once even
when the daemon and a `docbroker report` share the file), and `StatisticsView`
(keeps the store current from the stored positions, answers `report` off the event
loop). A report is a GROUP BY over day counters, never a scan of the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog

from broker.clock import now_ms
from broker.core.errors import BackendUnavailable, StorageFull
from broker.core.topics import Topics
from broker.directory.book import Directory
from broker.log.interface import DurableLog, Tailer
from broker.log.sqlite_space import FullDisk, is_full, storage_full
from broker.views.readmodel import StoreThread
from broker.views.report import Report, ReportQuery, build_report
from broker.views.stats_store import Canonical, StatisticsStore

log = structlog.get_logger(__name__)

DEFAULT_ZONE = "Asia/Ho_Chi_Minh"
Progress = Callable[[int, int], None]  # (records applied, records to apply at start)


class StatisticsView:
    """Keeps a StatisticsStore current from the `events` topic and makes reports.

    `directory` gives the directory as it is now (reports roll up in it); it is
    called from the view's thread, so it must return an immutable snapshot."""

    def __init__(
        self,
        log_: DurableLog,
        topics: Topics,
        path: Path,
        directory: Callable[[], Directory],
        *,
        zone: str = DEFAULT_ZONE,
    ) -> None:
        self.log_ = log_
        self.topics = topics
        self.path = path
        self.directory = directory
        self.zone_name = zone
        self.zone = ZoneInfo(zone)
        self._thread = StoreThread("statistics-view")
        self._store: StatisticsStore | None = None
        self._tailer: Tailer | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = False
        self._space = FullDisk("statistics view", path)

    def canonical(self, code: str) -> str:
        found = self.directory().find(code)
        return found.code if found else code

    @property
    def ready(self) -> bool:
        return self._ready

    def health(self) -> str:
        """ "ok", or why the view cannot keep up now (for /readyz)."""
        if not self._ready:
            return "not started"
        full = self._space.problem
        return str(full) if full is not None else "ok"

    async def start(self, *, follow: bool = True, progress: Progress | None = None) -> None:
        """Open the store, apply what the log holds now, then (`follow`) follow it."""
        try:
            self._store = await self._thread.run(
                StatisticsStore, self.path, self.topics.events, self.zone, self.canonical
            )
            await self.catch_up(progress)
        except BaseException:
            await self.stop()
            raise
        if follow:
            self._task = asyncio.create_task(self._follow(), name="statistics-view")
        self._ready = True

    async def catch_up(self, progress: Progress | None = None) -> int:
        """Apply the events the log holds now; how many records were read."""
        await self._open_tailer()
        ends = await self.log_.end_offsets([self.topics.events])
        mine = await self._tailing().positions()
        todo = sum(max(0, end - mine.get(tp, 0)) for tp, end in ends.items())
        done = 0
        while not await self._tailing().caught_up(ends):
            done += await self._apply_next()
            if progress is not None:
                progress(done, todo)
        return done

    async def stop(self) -> None:
        self._ready = False
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
        if self._tailer is not None:
            return
        positions = await self._thread.run(self._store_or_fail().positions)
        self._tailer = self.log_.tailer([self.topics.events], positions)
        await self._tailer.start()

    async def _close_tailer(self) -> None:
        if self._tailer is not None:
            await self._tailer.close()
            self._tailer = None

    def _tailing(self) -> Tailer:
        if self._tailer is None:
            raise BackendUnavailable("the statistics view is not tailing the log")
        return self._tailer

    async def _apply_next(self) -> int:
        records = await self._tailing().poll(0.5, 2000)
        if not records:
            return 0
        try:
            await self._thread.run(self._store_or_fail().apply, records)
        except Exception as exc:
            await self._close_tailer()  # read again from the stored positions
            if is_full(exc):
                full = storage_full(self.path, exc)
                self._space.failed(full)
                raise full from exc
            raise
        self._space.wrote()
        return len(records)

    async def _follow(self) -> None:
        """Apply new events as they come; failures are waited out and the tailer
        restarts from the stored positions, so that no event is skipped."""
        backoff = 0.1
        while True:
            try:
                await self._open_tailer()
                await self._apply_next()
                backoff = 0.1
            except StorageFull:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:
                log.warning("statistics view: step failed; retrying", error=str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _store_or_fail(self) -> StatisticsStore:
        if self._store is None:
            raise BackendUnavailable("the statistics view is not started")
        return self._store

    async def report(self, query: ReportQuery) -> Report:
        """The report of `query` as the view holds it now."""
        return await self._thread.run(self._report, query)

    def _report(self, query: ReportQuery) -> Report:
        store = self._store_or_fail()
        first, last = query.first_day.isoformat(), query.last_day.isoformat()
        at = now_ms()
        today = datetime.fromtimestamp(at / 1000, UTC).astimezone(self.zone).date()
        overdue_until = min(query.last_day, today.fromordinal(today.toordinal() - 1))
        return build_report(
            query,
            store.counters(first, last, query.period),
            store.pending(),
            store.overdue(first, overdue_until.isoformat()),
            self.directory(),
            now_ms=at,
            zone=self.zone_name,
            generated_at=datetime.fromtimestamp(at / 1000, UTC).isoformat(timespec="seconds"),
        )


__all__ = ["DEFAULT_ZONE", "Canonical", "StatisticsView"]
