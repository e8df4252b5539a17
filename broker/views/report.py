"""A statistics report as a value: the query, and tables built from the store's counters
with agencies rolled up in the directory as it is now. Pure.

Levels come from the directory's level labels (xã, phường, thị trấn: commune; huyện,
thị xã, thành phố: district; the rest of the province: province). With `level`, an
agency below that level is counted under its nearest ancestor at or above it; with
`agency` alone, the agency and everything under it count as that agency. Codes the
directory no longer has are reported under their code, level "unknown".
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from broker.directory.book import Directory
from broker.directory.model import Agency
from broker.views import stats_fold as fold
from broker.views.stats_store import CounterRow

LEVELS = ("province", "district", "commune")
PERIODS = ("day", "month", "year")
COMMUNE_LABELS = frozenset({"xã", "phường", "thị trấn"})
DISTRICT_LABELS = frozenset({"huyện", "thị xã", "thành phố"})
STATUS_CODES = ("01", "02", "03", "04", "05", "06", "13", "15", "16")


@dataclass(frozen=True, slots=True)
class ReportQuery:
    first_day: date
    last_day: date
    period: str = "month"
    agency: str | None = None
    level: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            "period": self.period,
            "agency": self.agency,
            "level": self.level,
        }


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    vi: str
    en: str


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    vi: str  # the title officials read
    en: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]

    def dicts(self) -> list[dict[str, Any]]:
        keys = [c.key for c in self.columns]
        return [dict(zip(keys, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class Report:
    query: ReportQuery
    zone: str
    generated_at: str
    totals: dict[str, int]
    tables: tuple[Table, ...]
    chart: dict[str, dict[str, int]] = field(default_factory=dict)  # period -> level -> n

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query.to_json(),
            "zone": self.zone,
            "generated_at": self.generated_at,
            "totals": self.totals,
            "tables": {t.name: t.dicts() for t in self.tables},
            "chart": self.chart,
        }

    def json_text(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, indent=2)


def level_of(agency: Agency | None) -> str:
    if agency is None:
        return "unknown"
    if not agency.local:
        return "external"
    label = agency.level.strip().lower()
    if label in COMMUNE_LABELS:
        return "commune"
    if label in DISTRICT_LABELS:
        return "district"
    return "province"


class RollUp:
    """Which agency (code, name, level) a code's counts are reported under."""

    def __init__(self, directory: Directory, level: str | None, agency: str | None) -> None:
        self.directory = directory
        self.rank = LEVELS.index(level) if level else None
        found = directory.find(agency) if agency else None
        self.agency = found.code if found else agency
        self._memo: dict[str, tuple[str, str, str] | None] = {}

    def __call__(self, code: str) -> tuple[str, str, str] | None:
        """None: outside `agency` (when one is asked)."""
        if code not in self._memo:
            self._memo[code] = self._resolve(code)
        return self._memo[code]

    def _resolve(self, code: str) -> tuple[str, str, str] | None:
        node = self.directory.find(code)
        if node is None:
            return None if self.agency and code != self.agency else (code, "", "unknown")
        chain = [node, *self.directory.ancestors(node)]
        if self.agency and self.rank is None:
            hit = next((a for a in chain if a.code == self.agency), None)
            return None if hit is None else (hit.code, hit.name, level_of(hit))
        if self.rank is not None and node.local:
            node = next(
                (a for a in chain if a.local and LEVELS.index(level_of(a)) <= self.rank), chain[-1]
            )
        if self.agency and self.agency not in {a.code for a in chain}:
            return None
        return node.code, node.name, level_of(node)


def _c(key: str, vi: str, en: str) -> Column:
    return Column(key, vi, en)


AGENCY_COLUMNS = (_c("agency", "Mã đơn vị", "agency"), _c("name", "Tên đơn vị", "name"),
                  _c("level", "Cấp", "level"))  # fmt: skip
TRAFFIC_MEASURES = (
    ("sent_documents", "Văn bản gửi", "documents sent", fold.SENT, "document"),
    ("sent_statuses", "Trạng thái gửi", "statuses sent", fold.SENT, "status"),
    ("received_documents", "Văn bản nhận", "documents received", fold.RECEIVED, "document"),
    ("received_statuses", "Trạng thái nhận", "statuses received", fold.RECEIVED, "status"),
    ("axis_in", "Nhận từ trục quốc gia", "inbound from the national axis", fold.AXIS_IN, "*"),
    ("axis_out", "Gửi lên trục quốc gia", "outbound to the national axis", fold.AXIS_OUT, "*"),
    ("axis_confirmed", "Trục quốc gia xác nhận", "confirmed by the axis", fold.AXIS_CONFIRMED, "*"),
    ("refused", "Bị từ chối", "refused", fold.REFUSED, "*"),
)  # fmt: skip


def build_report(
    query: ReportQuery,
    counters: Iterable[CounterRow],
    pending: Iterable[tuple[str, int, int]],
    overdue: Iterable[tuple[str, int]],
    directory: Directory,
    *,
    now_ms: int,
    zone: str,
    generated_at: str,
) -> Report:
    """The report of `query` from the store's rows (see StatisticsStore)."""
    roll = RollUp(directory, query.level, query.agency)
    sums: dict[tuple[str, str, str, str], int] = defaultdict(int)  # (period, code, m, key)
    names: dict[str, tuple[str, str]] = {}
    for row in counters:
        who = roll(row.agency)
        if who is None:
            continue
        names[who[0]] = (who[1], who[2])
        sums[(row.period, who[0], row.measure, row.key)] += row.n
    traffic = _traffic(sums, names)
    tables = (
        traffic,
        _by_key(sums, names, fold.REFUSED, "refusals", "Từ chối theo mã lỗi", "refused by code",
                _c("code", "Giai đoạn:mã lỗi", "stage:code")),
        _by_key(sums, names, fold.STATUS, "statuses", "Trạng thái đã đạt", "statuses reached",
                _c("status", "Mã trạng thái", "status code")),
        _pending(pending, roll, now_ms),
        _on_time(sums, names, overdue, roll),
        _delivery(sums, names),
    )  # fmt: skip
    totals = {m[0]: 0 for m in TRAFFIC_MEASURES}
    chart: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in traffic.rows:
        for i, measure in enumerate(TRAFFIC_MEASURES):
            totals[measure[0]] += row[4 + i]
        chart[row[0]][row[3]] += row[4] + row[6]  # documents sent and received
    totals["pending"] = sum(r[3] for r in tables[3].rows)
    return Report(
        query, zone, generated_at, totals, tables, {p: dict(v) for p, v in sorted(chart.items())}
    )


def _traffic(sums: Mapping[tuple[str, str, str, str], int], names: Mapping) -> Table:
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(TRAFFIC_MEASURES))
    for (period, code, measure, key), n in sums.items():
        for i, (_, _, _, m, k) in enumerate(TRAFFIC_MEASURES):
            if m == measure and k in ("*", key):
                cells[(period, code)][i] += n
    rows = tuple(
        (period, code, *names[code], *values) for (period, code), values in sorted(cells.items())
    )
    columns = (
        _c("period", "Kỳ", "period"),
        *AGENCY_COLUMNS,
        *(_c(key, vi, en) for key, vi, en, _, _ in TRAFFIC_MEASURES),
    )
    return Table("traffic", "Lưu lượng văn bản", "document traffic", columns, rows)


def _by_key(
    sums: Mapping[tuple[str, str, str, str], int],
    names: Mapping,
    measure: str,
    name: str,
    vi: str,
    en: str,
    key_column: Column,
) -> Table:
    """Over the whole range, per agency and key."""
    cells: dict[tuple[str, str], int] = defaultdict(int)
    for (_, code, m, key), n in sums.items():
        if m == measure:
            cells[(code, key)] += n
    rows = tuple((code, *names[code], key, n) for (code, key), n in sorted(cells.items()))
    columns = (*AGENCY_COLUMNS, key_column, _c("count", "Số lượng", "count"))
    return Table(name, vi, en, columns, rows)


def _pending(pending: Iterable[tuple[str, int, int]], roll: RollUp, now_ms: int) -> Table:
    cells: dict[tuple[str, str, str], list[int]] = {}
    for code, n, oldest in pending:
        who = roll(code)
        if who is None:
            continue
        cell = cells.setdefault(who, [0, oldest])
        cell[0] += n
        cell[1] = min(cell[1], oldest)
    rows = tuple(
        (*who, n, max(0, (now_ms - oldest) // 1000))
        for who, (n, oldest) in sorted(cells.items(), key=lambda kv: kv[1][1])
    )
    columns = (
        *AGENCY_COLUMNS,
        _c("pending", "Chưa xác nhận", "pending (unacknowledged)"),
        _c("oldest_age_s", "Tuổi văn bản cũ nhất (giây)", "age of the oldest (s)"),
    )
    return Table("pending", "Văn bản chưa được xác nhận", "pending, oldest first", columns, rows)


def _on_time(
    sums: Mapping[tuple[str, str, str, str], int],
    names: Mapping,
    overdue: Iterable[tuple[str, int]],
    roll: RollUp,
) -> Table:
    cells: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for (_, code, m, key), n in sums.items():
        if m == fold.ON_TIME:
            cells[(code, *names[code])][0 if key == "on_time" else 1] += n
    for code, n in overdue:
        who = roll(code)
        if who is not None:
            cells[who][2] += n
    rows = tuple((*who, *values) for who, values in sorted(cells.items()))
    columns = (
        *AGENCY_COLUMNS,
        _c("on_time", "Hoàn thành đúng hạn", "done on time"),
        _c("late", "Hoàn thành quá hạn", "done late"),
        _c("overdue", "Quá hạn chưa hoàn thành", "overdue, not done"),
    )
    return Table("on_time", "Xử lý đúng hạn (trạng thái 06)", "on-time processing", columns, rows)


def _delivery(sums: Mapping[tuple[str, str, str, str], int], names: Mapping) -> Table:
    hists: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for (_, code, m, key), n in sums.items():
        if m == fold.DELIVERY:
            hists[code][int(key)] += n
            hists[""][int(key)] += n
    rows = tuple(
        (code, *(names[code] if code else ("(all)", "")), sum(h.values()),
         *(_seconds(fold.percentile(h, q)) for q in (50, 90, 99)))
        for code, h in sorted(hists.items())
    )  # fmt: skip
    columns = (
        *AGENCY_COLUMNS,
        _c("delivered", "Số lượt nhận", "deliveries"),
        _c("p50_s", "Trung vị (giây)", "p50 (s)"),
        _c("p90_s", "P90 (giây)", "p90 (s)"),
        _c("p99_s", "P99 (giây)", "p99 (s)"),
    )
    return Table("delivery", "Thời gian nhận văn bản", "delivery time", columns, rows)


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 3)


def status_counts(report: Report) -> dict[str, int]:
    """Statuses reached over the report, per code (for summaries)."""
    out = dict.fromkeys(STATUS_CODES, 0)
    for row in report.table("statuses").rows:
        out[row[3]] = out.get(row[3], 0) + row[4]
    return out
