"""The statistics view: counters kept as traffic flows, by tailing the `events` topic.

Three layers, like the document view: `stats_fold` (an event -> its effects, pure),
`StatisticsStore` (the aggregate tables in a SQLite file, applied exactly once even
when the daemon and a `docbroker report` share the file), and `StatisticsView`
(keeps the store current from the stored positions, answers `report` off the event
loop). A report is a GROUP BY over day counters, never a scan of the log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog

from broker.clock import now_ms
from broker.core.logrecords import Record
from broker.core.topics import Topics
from broker.directory.book import Directory
from broker.log.interface import DurableLog
from broker.views.report import Report, ReportQuery, build_report
from broker.views.stats_store import Canonical, StatisticsStore
from broker.views.tailed import Progress, TailedView

log = structlog.get_logger(__name__)

DEFAULT_ZONE = "Asia/Ho_Chi_Minh"


class StatisticsView(TailedView[StatisticsStore]):
    """Keeps a StatisticsStore current from the `events` topic and makes reports.

    `directory` gives the directory as it is now (reports roll up in it); it is
    called from the view's thread, so it must return an immutable snapshot."""

    name = "statistics view"
    lagging = True  # searches and reports: a few tens of ms late is fine
    batch = 2000

    def __init__(
        self,
        log_: DurableLog,
        topics: Topics,
        path: Path,
        directory: Callable[[], Directory],
        *,
        zone: str = DEFAULT_ZONE,
    ) -> None:
        super().__init__(log_, topics, path)
        self.directory = directory
        self.zone_name = zone
        self.zone = ZoneInfo(zone)

    def canonical(self, code: str) -> str:
        found = self.directory().find(code)
        return found.code if found else code

    def _open_store(self) -> StatisticsStore:
        return StatisticsStore(self.path, self.topics.events, self.zone, self.canonical)

    def _apply(self, store: StatisticsStore, records: Sequence[Record]) -> None:
        store.apply(records)

    async def report(self, query: ReportQuery) -> Report:
        """The report of `query` as the view holds it now."""
        return await self._run(self._report, query)

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


__all__ = ["DEFAULT_ZONE", "Canonical", "Progress", "StatisticsView"]
