"""The statistics: the pure fold (event -> effects), the store (counters applied exactly
once, even by two stores on one file), the report's roll-up in both directories, the
percentile merge, and the renderers."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from broker.core.logrecords import NewRecord, Record
from broker.core.receipts import ReceiptKind
from broker.directory.book import Directory
from broker.directory.io import parse_file
from broker.views import stats_fold as fold
from broker.views.report import ReportQuery, RollUp, build_report, level_of
from broker.views.report_chart import chart_png, chart_svg
from broker.views.report_render import csv_text, table_text, xlsx_bytes
from broker.views.stats_store import StatisticsStore, whole_months
from tests.documents_kit import NOI_VU, PROVINCE, T0, UNKNOWN, UPSTREAM, VP, Trail
from tests.edxml_samples import document, status
from tests.processing_kit import TOPICS, directory, with_suspended

ROOT = Path(__file__).resolve().parents[2]
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
DAY = fold.local_day(T0, ZONE)  # T0 is 2027-01-15 15:00 in Vietnam
DOC2 = "000.00.00.H35,2027/01/02,2/UBND-VP"


def read_back(records: Sequence[NewRecord]) -> list[Record]:
    events = [r for r in records if r.topic == TOPICS.events]
    return [Record(r.topic, 0, i, r.key, r.value, r.headers, T0) for i, r in enumerate(events)]


def mixed_trail() -> Trail:
    """One document (due 2027-01-20) to two local agencies and one outside; a fetch
    3 s later and an acknowledgement (01) by VP; VP's 06 a day later, NOI_VU's 03; a
    second document, due 2027-01-10, to NOI_VU only, never done; a refusal."""
    t = Trail()
    t.submit(document(recipients=(VP, NOI_VU, UPSTREAM), due_date="2027/01/20"), at_ms=T0,
             message_id="m-doc")  # fmt: skip
    t.receipt(ReceiptKind.FETCHED, at_ms=T0 + 3000, recipient="H35.S01", message_id="m-doc")
    t.receipt(ReceiptKind.FETCHED, at_ms=T0 + 9000, recipient="H35.S01", message_id="m-doc")
    t.receipt(ReceiptKind.ACKNOWLEDGED, at_ms=T0 + 4000, recipient="H35.S01", message_id="m-doc")
    t.submit(status(sender=VP, code="06"), at_ms=T0 + 86_400_000, message_id="m-06")
    t.submit(status(sender=NOI_VU, code="03"), at_ms=T0 + 5000, message_id="m-03")
    t.submit(document(recipients=(NOI_VU,), document_id=DOC2, due_date="2027/01/10"),
             at_ms=T0 + 6000, message_id="m-doc2")  # fmt: skip
    t.submit(document(sender=VP, document_id="000.00.01.H35,2027/01/01,1/X"), at_ms=T0 + 7000,
             message_id="m-sus", d=with_suspended(VP))  # fmt: skip
    return t


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StatisticsStore]:
    s = StatisticsStore(tmp_path / "statistics.sqlite", TOPICS.events, ZONE)
    yield s
    s.close()


def counts(store: StatisticsStore, period: str = "day") -> dict[tuple[str, str, str, str], int]:
    return {
        (r.period, r.agency, r.measure, r.key): r.n
        for r in store.counters("2000-01-01", "2100-01-01", period)
    }


class TestFold:
    def test_days_are_local_days(self) -> None:
        # 2027-01-15 17:30 UTC is 16 January, 00:30, in Vietnam
        at = T0 + int(9.5 * 3600 * 1000)
        assert fold.local_day(at, ZONE) == "2027-01-16"
        assert fold.local_day(at, UTC) == "2027-01-15"

    def test_an_accepted_document_counts_at_its_sender_and_remembers_its_due_date(self) -> None:
        accepted = mixed_trail().bodies()[0]
        eff = fold.effects_of(accepted, ZONE)
        assert eff.counts == [("H35", DAY, fold.SENT, "document", 1)]
        assert eff.message == ("m-doc", "document", "http", "2027-01-20", accepted["document_id"])

    def test_old_events_without_source_or_due_date_count_as_unknown(self) -> None:
        accepted = mixed_trail().bodies()[0]
        old = {**accepted, "details": {k: v for k, v in accepted["details"].items()
                                       if k not in ("source", "due_date")}}  # fmt: skip
        assert fold.effects_of(old, ZONE).message[2:4] == ("unknown", None)  # type: ignore[index]

    def test_a_refusal_counts_each_problem_at_its_sender(self) -> None:
        refused = [b for b in mixed_trail().bodies() if b["type"] == "refused"]
        assert fold.effects_of(refused[0], ZONE).counts == [
            (VP, fold.local_day(T0 + 7000, ZONE), fold.REFUSED, "pipeline:sender-suspended", 1)
        ]

    def test_a_refused_recipient_counts_at_the_sender(self) -> None:
        t = Trail()
        # with a recipient served (none served: the whole submission is refused)
        t.submit(document(recipients=(VP, UNKNOWN)), at_ms=T0, message_id="m-unk")
        refused = next(b for b in t.bodies() if b["type"] == "recipient-refused")
        assert fold.effects_of(refused, ZONE).counts == [
            (PROVINCE, DAY, fold.REFUSED, "recipient:unknown-recipient", 1)
        ]

    def test_a_status_docbroker_made_counts_at_who_reached_it_and_goes_to_a_mailbox(self) -> None:
        emitted = next(b for b in mixed_trail().bodies() if b["type"] == "status-emitted")
        eff = fold.effects_of(emitted, ZONE)
        assert eff.counts == [("H35.S01", DAY, fold.STATUS, "01", 1)]  # VP acknowledged
        assert eff.routed == (emitted["message_id"], "H35", emitted["at_ms"])

    def test_buckets_and_percentiles(self) -> None:
        assert fold.bucket_of(0) == 0
        assert fold.bucket_of(10**12) == len(fold.BUCKET_BOUNDS_MS) - 1
        for ms in (15, 999, 3000, 86_400_000):
            bound = fold.BUCKET_BOUNDS_MS[fold.bucket_of(ms)]
            assert ms <= bound < ms * 10 ** (1 / fold.BUCKETS_PER_DECADE) + 1e-9

    def test_percentiles_of_merged_days_equal_those_of_all_times(self) -> None:
        """Histograms add exactly: the percentile of two days merged is the one of all
        their times together, at bucket resolution."""
        day1 = [100, 200, 300, 5000, 70_000]
        day2 = [150, 160, 900_000, 40, 2500, 2600, 2700]
        h1, h2, both = {}, {}, {}
        for h, times in ((h1, day1), (h2, day2), (both, day1 + day2)):
            for ms in times:
                h[fold.bucket_of(ms)] = h.get(fold.bucket_of(ms), 0) + 1
        merged = {k: h1.get(k, 0) + h2.get(k, 0) for k in set(h1) | set(h2)}
        everything = sorted(day1 + day2)
        for q in (50, 90, 99):
            assert fold.percentile(merged, q) == fold.percentile(both, q)
            exact = everything[max(1, -(-len(everything) * q // 100)) - 1]
            assert fold.percentile(merged, q) == fold.BUCKET_BOUNDS_MS[fold.bucket_of(exact)]
        assert fold.percentile({}, 50) is None


class TestStore:
    def test_every_measure(self, store: StatisticsStore) -> None:
        trail = mixed_trail()
        assert store.apply(read_back(trail.records)) == len(trail.bodies())
        c = counts(store)
        next_day = fold.local_day(T0 + 86_400_000, ZONE)
        assert c[(DAY, "H35", "sent", "document")] == 2
        assert c[(DAY, "H35.S01", "received", "document")] == 1
        assert c[(DAY, "H35.S02", "received", "document")] == 2
        assert c[(DAY, PROVINCE, "axis_out", "document")] == 1  # to G22, via the axis
        assert c[(DAY, "H35", "received", "status")] == 2  # the 01 and NOI_VU's 03
        assert c[(next_day, "H35", "received", "status")] == 1  # VP's 06
        assert c[(DAY, "H35.S01", "status", "01")] == 1
        assert c[(next_day, "H35.S01", "status", "06")] == 1
        assert c[(DAY, "H35.S02", "status", "03")] == 1
        assert c[(next_day, "H35.S01", "on_time", "on_time")] == 1
        assert c[(DAY, VP, "refused", "pipeline:sender-suspended")] == 1
        assert c[(DAY, "H35.S01", "delivery", str(fold.bucket_of(3000)))] == 1  # first fetch
        assert not any(k[2] == "axis_in" for k in c)  # nothing came from the axis
        pending = {r: n for r, n, _ in store.pending()}
        # VP acknowledged; NOI_VU has two documents, H35 the 01, the 03 and the 06
        assert pending == {"H35.S02": 2, "H35": 3}
        assert store.overdue("2027-01-01", "2027-01-31") == [("H35.S02", 2)]
        assert store.overdue("2027-01-01", "2027-01-15") == [("H35.S02", 1)]

    def test_months_and_years_roll_up_from_days(self, store: StatisticsStore) -> None:
        store.apply(read_back(mixed_trail().records))
        by_day = counts(store, "day")
        for period, width in (("month", 7), ("year", 4)):
            rolled: dict[tuple[str, str, str, str], int] = {}
            for (d, *rest), n in by_day.items():
                key = (d[:width], *rest)
                rolled[key] = rolled.get(key, 0) + n  # type: ignore[index]
            assert counts(store, period) == rolled

    def test_any_range_sums_its_days_whole_months_or_not(self, store: StatisticsStore) -> None:
        """Whole months come from the month counters, the edges from the days: any
        range gives what its days add up to."""
        t = Trail()
        for k in range(8):  # one document every 17 days, from mid-January into May
            t.submit(document(recipients=(VP,), document_id=f"{PROVINCE},2027/01/01,{k}/X"),
                     at_ms=T0 + k * 17 * 86_400_000, message_id=f"m-{k}")  # fmt: skip
        store.apply(read_back(t.records))
        by_day = counts(store, "day")
        ranges = [("2027-01-01", "2027-12-31"), ("2027-01-16", "2027-03-31"),
                  ("2027-02-01", "2027-02-28"), ("2027-02-02", "2027-04-20"),
                  ("2027-01-15", "2027-01-15"), ("2026-12-31", "2027-05-01")]  # fmt: skip
        for first, last in ranges:
            for period, width in (("month", 7), ("year", 4)):
                want: dict[tuple[str, str, str, str], int] = {}
                for (d, *rest), n in by_day.items():
                    if first <= d <= last:
                        key = (d[:width], *rest)
                        want[key] = want.get(key, 0) + n  # type: ignore[index]
                got = {(r.period, r.agency, r.measure, r.key): r.n
                       for r in store.counters(first, last, period)}  # fmt: skip
                assert got == want, (first, last, period)

    def test_whole_months(self) -> None:
        assert whole_months(date(2027, 1, 1), date(2027, 12, 31)) == (
            date(2027, 1, 1), date(2027, 12, 31))  # fmt: skip
        assert whole_months(date(2027, 1, 2), date(2027, 3, 30)) == (
            date(2027, 2, 1), date(2027, 2, 28))  # fmt: skip
        assert whole_months(date(2027, 1, 2), date(2027, 1, 31)) is None
        assert whole_months(date(2026, 12, 1), date(2027, 1, 31)) == (
            date(2026, 12, 1), date(2027, 1, 31))  # fmt: skip

    def test_two_stores_on_one_file_apply_each_record_once(self, tmp_path: Path) -> None:
        """The daemon and a CLI share the file: whichever applies a record first, the
        other skips it (positions are read in the write transaction)."""
        records = read_back(mixed_trail().records)
        path = tmp_path / "shared.sqlite"
        a = StatisticsStore(path, TOPICS.events, ZONE)
        b = StatisticsStore(path, TOPICS.events, ZONE)
        try:
            assert a.apply(records[:5]) == 5
            assert b.apply(records) == len(records) - 5  # b's tailer started at 0
            assert a.apply(records[5:]) == 0
            alone = StatisticsStore(tmp_path / "alone.sqlite", TOPICS.events, ZONE)
            alone.apply(records)
            assert counts(a) == counts(alone) and sorted(a.pending()) == sorted(alone.pending())
            alone.close()
        finally:
            a.close()
            b.close()

    def test_two_stores_applying_at_once_count_each_record_once(self, tmp_path: Path) -> None:
        """Two connections (as two processes) race over the same records in small
        batches: BEGIN IMMEDIATE serialises them and each record counts once."""
        import threading

        records = read_back(mixed_trail().records)
        path = tmp_path / "shared.sqlite"
        stores = [StatisticsStore(path, TOPICS.events, ZONE) for _ in range(2)]
        applied = [0, 0]

        def run(i: int) -> None:
            for start in range(0, len(records), 3):
                applied[i] += stores[i].apply(records[start : start + 3])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        alone = StatisticsStore(tmp_path / "alone.sqlite", TOPICS.events, ZONE)
        alone.apply(records)
        try:
            assert sum(applied) == len(records)
            assert counts(stores[0]) == counts(alone)
        finally:
            for s in (*stores, alone):
                s.close()

    def test_something_not_an_event_is_skipped(self, store: StatisticsStore) -> None:
        bad = Record(TOPICS.events, 0, 0, b"k", b"not json", (), T0)
        assert store.apply([bad]) == 0
        assert counts(store) == {}


def pre_reform() -> Directory:
    return directory()


def post_reform() -> Directory:
    path = ROOT / "config" / "directory" / "lai-chau.toml"
    agencies, problems = parse_file(path.name, path.read_text(encoding="utf-8"))
    assert not problems
    return Directory.of(agencies)


class TestRollUp:
    def test_three_levels_before_the_reform(self) -> None:
        d = pre_reform()
        commune = next(a for a in d if level_of(a) == "commune")
        district = d.find(commune.parent)
        assert district is not None and level_of(district) == "district"
        assert RollUp(d, "district", None)(commune.code)[0] == district.code  # type: ignore[index]
        assert RollUp(d, "province", None)(commune.code)[0] == "H35"  # type: ignore[index]
        assert RollUp(d, "commune", None)(commune.code)[0] == commune.code  # type: ignore[index]
        assert RollUp(d, None, district.code)(commune.code)[0] == district.code  # type: ignore[index]
        assert RollUp(d, None, district.code)("H35.S01") is None
        assert RollUp(d, "province", None)("ZZZ.GONE") == ("ZZZ.GONE", "", "unknown")

    def test_two_levels_after_the_reform(self) -> None:
        d = post_reform()
        assert {level_of(a) for a in d if a.local} == {"province", "commune"}
        commune = next(a for a in d if level_of(a) == "commune")
        assert RollUp(d, "province", None)(commune.code)[0] == "H35"  # type: ignore[index]
        assert RollUp(d, "commune", None)(commune.code)[0] == commune.code  # type: ignore[index]

    def test_a_report_rolls_communes_into_districts(self, store: StatisticsStore) -> None:
        d = pre_reform()
        communes = [a for a in d if level_of(a) == "commune"][:3]
        t = Trail()
        t.submit(document(recipients=tuple(a.code102 for a in communes)), at_ms=T0,
                 message_id="m-c")  # fmt: skip
        store.apply(read_back(t.records))
        report = make_report(store, d, level="district")
        received = {r[1]: r[6] for r in report.table("traffic").rows}
        expected: dict[str, int] = {}
        for a in communes:
            expected[a.parent] = expected.get(a.parent, 0) + 1
        assert {k: v for k, v in received.items() if v} == expected
        assert report.totals["received_documents"] == 3


def make_report(store: StatisticsStore, d: Directory, **kw: str):
    query = ReportQuery(date(2027, 1, 1), date(2027, 12, 31), kw.pop("period", "month"), **kw)
    return build_report(
        query,
        store.counters("2027-01-01", "2027-12-31", query.period),
        store.pending(),
        store.overdue("2027-01-01", "2027-01-31"),
        d,
        now_ms=T0 + 2 * 86_400_000,
        zone="Asia/Ho_Chi_Minh",
        generated_at="2027-01-17T08:00:00+00:00",
    )


class TestReport:
    def test_tables_and_totals(self, store: StatisticsStore) -> None:
        store.apply(read_back(mixed_trail().records))
        report = make_report(store, pre_reform())
        assert report.totals["sent_documents"] == 2
        assert report.totals["received_documents"] == 3
        assert report.totals["axis_out"] == 1
        assert report.totals["refused"] == 1
        assert report.totals["pending"] == 5
        on_time = {r[0]: r[3:] for r in report.table("on_time").rows}
        assert on_time == {"H35.S01": (1, 0, 0), "H35.S02": (0, 0, 2)}
        pending = report.table("pending").rows
        assert pending[0][0] in ("H35", "H35.S02")
        assert pending[0][4] == 2 * 86_400  # the oldest: routed at T0
        delivery = {r[0]: r for r in report.table("delivery").rows}
        assert delivery[""][3] == 1
        assert delivery[""][4] == round(fold.BUCKET_BOUNDS_MS[fold.bucket_of(3000)] / 1000, 3)
        assert json.loads(report.json_text())["totals"] == report.totals

    def test_renderers(self, store: StatisticsStore) -> None:
        store.apply(read_back(mixed_trail().records))
        report = make_report(store, pre_reform())
        text = table_text(report)
        assert "Lưu lượng văn bản (document traffic)" in text and "H35.S02" in text
        lines = csv_text(report).splitlines()
        assert lines[0].startswith("table,period,agency,name,level,sent_documents")
        assert sum(1 for line in lines if line.startswith("traffic,")) == len(
            report.table("traffic").rows
        )
        import io

        from openpyxl import load_workbook

        book = load_workbook(io.BytesIO(xlsx_bytes(report)))
        assert book.sheetnames == ["Tong hop", *(t.name for t in report.tables)]
        assert book["traffic"]["B1"].value == "Mã đơn vị (agency)"
        svg = chart_svg(report)
        assert svg.startswith("<svg") and "<script" not in svg and " on" not in svg.lower()
        assert "2027-01" in svg
        assert chart_png(report)[:8] == b"\x89PNG\r\n\x1a\n"
