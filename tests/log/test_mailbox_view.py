"""The mailbox view on both backends: filtering by kind, counting what waits, getting
over a store that cannot write, and its lag once caught up.

The mailbox records are the pipeline's own (the real InboundProcessor), the receipts
the HTTP API's, appended to a real log; nothing stands in for the log.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from broker.core.logrecords import NewRecord, Position, Record, TopicSpec
from broker.core.receipts import Receipt, ReceiptKind
from broker.core.records import H, new_message_id
from broker.core.topics import Topics
from broker.log.interface import DurableLog
from broker.views.mailbox import MailboxStore, MailboxView
from tests.conftest import LogFactory
from tests.edxml_samples import document, status
from tests.full_store import sqlite_full_error
from tests.processing_kit import (
    NOW,
    TOPICS,
    as_record,
    consumed,
    ctx,
    directory,
    headers,
    processor,
)

PROVINCE, VP = "000.00.00.H35", "000.00.01.H35"
UNKNOWN = "999.99.99.X99"
MAILBOX = "H35"  # the province's directory code: where everything below lands


class Gauges:
    """Records what the view reports (the Metrics hooks it calls)."""

    def __init__(self) -> None:
        self.states: list[tuple[int, int]] = []  # (pending, lag)
        self.acks = 0
        self.oldest: float | None = None  # seconds
        self.backlogs: list[dict[str, tuple[int, float]]] = []  # by agency

    def acknowledged(self) -> None:
        self.acks += 1

    def oldest_unacknowledged(self, seconds: float) -> None:
        self.oldest = seconds

    def mailbox_state(self, pending: int, lag: int) -> None:
        self.states.append((pending, lag))

    def mailbox_backlog(self, by_agency: Mapping[str, tuple[int, float]]) -> None:
        self.backlogs.append(dict(by_agency))


@pytest.fixture
async def log(make_log: LogFactory) -> DurableLog:
    return await make_log()


@pytest.fixture
async def topics(log: DurableLog, unique_prefix: str) -> Topics:
    topics = Topics.with_prefix(unique_prefix)
    await log.ensure_topics(
        [
            TopicSpec(topics.mailbox, 3, 1024 * 1024),
            TopicSpec(topics.receipts, 3, 1024 * 1024),
        ]
    )
    return topics


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "view" / "mailbox.sqlite"


async def started(
    views: list[MailboxView], log: DurableLog, topics: Topics, path: Path, **kw: Any
) -> MailboxView:
    metrics = kw.pop("metrics", None) or Gauges()
    view = MailboxView(log, topics, path, metrics, **kw)
    views.append(view)
    await view.start()
    return view


def mail(topics: Topics, data: bytes, message_id: str) -> list[NewRecord]:
    """The mailbox records the pipeline makes of one submission, on `topics`."""
    out = processor().process(consumed(data, message_id=message_id), ctx())
    return [replace(r, topic=topics.mailbox) for r in out.records if r.topic == TOPICS.mailbox]


def to_the_province(topics: Topics) -> list[NewRecord]:
    """The province's mailbox gets a 02 (its document named an unknown recipient), a
    status 03 from VP, and a document from VP; VP gets the province's document."""
    return [
        *mail(topics, document(recipients=(VP, UNKNOWN)), new_message_id(NOW)),
        *mail(topics, status(sender=VP, answers=PROVINCE), new_message_id(NOW + 1)),
        *mail(
            topics,
            document(sender=VP, recipients=(PROVINCE,), document_id=f"{VP},2026/11/25,7/VP"),
            new_message_id(NOW + 2),
        ),
    ]


def ack(topics: Topics, entry: NewRecord, at_ms: int = NOW + 10) -> NewRecord:
    """The receipt the HTTP API appends when the recipient acknowledges `entry`."""
    h = headers(entry)
    receipt = Receipt(
        ReceiptKind.ACKNOWLEDGED,
        at_ms,
        h[H.MESSAGE_ID],
        h[H.DOCUMENT_ID],
        h[H.SENDER],
        h[H.RECIPIENT],
        h[H.TRACE_ID],
        h[H.KIND],
        sha256=h[H.SHA256],
    )
    return receipt.to_record(topics.receipts)


def for_the_province(records: Sequence[NewRecord], kind: str) -> list[NewRecord]:
    return [r for r in records if headers(r)[H.RECIPIENT] == MAILBOX and headers(r)[H.KIND] == kind]


@pytest.mark.usefixtures("no_blocking_loop")
class TestKindAndCounts:
    async def test_listing_one_kind_and_counting_what_waits(
        self, log: DurableLog, topics: Topics, path: Path, views: list[MailboxView]
    ) -> None:
        records = to_the_province(topics)
        statuses = for_the_province(records, "status")
        (doc,) = for_the_province(records, "document")
        assert len(statuses) == 2
        view = await started(views, log, topics, path)
        positions = await log.append(records)
        positions += await log.append([ack(topics, statuses[0])])
        assert await view.wait_applied(positions, 20)

        def ids(found: Sequence[Any]) -> list[str]:
            return [d.message_id for d in found]

        def ids_of(recs: Sequence[NewRecord]) -> list[str]:
            return [headers(r)[H.MESSAGE_ID] for r in recs]

        everything = await view.list(MAILBOX, include_acked=True)
        assert sorted(ids(everything)) == sorted(ids_of([*statuses, doc]))
        assert ids(await view.list(MAILBOX, kind="status")) == ids_of(statuses[1:])
        all_statuses = await view.list(MAILBOX, kind="status", include_acked=True)
        assert sorted(ids(all_statuses)) == sorted(ids_of(statuses))
        assert {d.kind for d in all_statuses} == {"status"}
        assert ids(await view.list(MAILBOX, kind="document")) == ids_of([doc])
        assert await view.list(MAILBOX, kind="nothing", include_acked=True) == []

        assert await view.count_pending(MAILBOX) == 2
        assert await view.count_pending(MAILBOX, "status") == 1
        assert await view.count_pending(MAILBOX, "document") == 1
        assert await view.count_pending("H35.S01") == 1  # VP's copy of the document
        assert await view.count_pending("H35.S01", "status") == 0
        assert await view.count_pending("nobody") == 0

    async def test_a_long_poll_of_one_kind_waits_for_that_kind(
        self, log: DurableLog, topics: Topics, path: Path, views: list[MailboxView]
    ) -> None:
        view = await started(views, log, topics, path)
        records = to_the_province(topics)
        (doc,) = for_the_province(records, "document")
        waiting = asyncio.create_task(view.list(MAILBOX, kind="document", wait=20))
        await asyncio.sleep(0.2)
        await log.append([r for r in records if r is not doc])
        await asyncio.sleep(1.0)
        assert not waiting.done()  # statuses came, not a document
        await log.append([doc])
        found = await asyncio.wait_for(waiting, 20)
        assert [d.message_id for d in found] == [headers(doc)[H.MESSAGE_ID]]

    @pytest.mark.parametrize("backend", ["embedded"])
    async def test_released_long_polls_answer_at_once(
        self, log: DurableLog, topics: Topics, path: Path, views: list[MailboxView]
    ) -> None:
        """On shutdown (wake_all) a waiting poll answers what there is at once, and so
        does one that comes after, instead of waiting out its `wait` while the server
        waits for in-flight requests."""
        view = await started(views, log, topics, path)
        waiting = asyncio.create_task(view.list(MAILBOX, wait=30))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        view.wake_all()
        assert await asyncio.wait_for(waiting, 2) == []
        assert await asyncio.wait_for(view.list(MAILBOX, wait=30), 2) == []


@pytest.mark.usefixtures("no_blocking_loop")
class TestBadRecords:
    async def test_a_record_that_is_not_a_receipt_is_passed_over(
        self, log: DurableLog, topics: Topics, path: Path, views: list[MailboxView]
    ) -> None:
        """Retrying its batch would never end: it is left out, and the rest applied."""
        view = await started(views, log, topics, path)
        records = to_the_province(topics)
        bad = [
            NewRecord(topics.receipts, b"not json", key=MAILBOX.encode()),
            NewRecord(topics.receipts, b'{"kind": "eaten"}', key=MAILBOX.encode()),
        ]
        positions = await log.append([*bad, *records, ack(topics, records[0])])
        assert await view.wait_applied(positions, 20)
        assert await view.count_pending(MAILBOX) == 3
        assert await view.count_pending("H35.S01") == 0


class TestFailedApply:
    """Without the blocking-loop check: the failure is logged with its traceback,
    which a console renderer formats on the loop, slower than the check allows."""

    async def test_a_store_that_cannot_write_loses_nothing_and_the_view_goes_on(
        self,
        log: DurableLog,
        topics: Topics,
        path: Path,
        views: list[MailboxView],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The records of a failed apply are read again from the stored positions, and
        the view keeps following the log afterwards."""
        gauges = Gauges()
        view = await started(views, log, topics, path, metrics=gauges)
        real_apply = MailboxStore.apply
        failed: list[int] = []

        def full_disk_twice(store: MailboxStore, records: Sequence[Record]) -> Any:
            if len(failed) < 2:
                failed.append(len(records))
                raise sqlite3.OperationalError("database or disk is full")
            return real_apply(store, records)

        monkeypatch.setattr(MailboxStore, "apply", full_disk_twice)
        records = to_the_province(topics)
        first = records[0]
        positions = await log.append(records)
        assert await view.wait_applied(positions, 30)
        assert len(failed) == 2

        positions = await log.append([ack(topics, first)])
        assert await view.wait_applied(positions, 20)
        assert gauges.acks == 1
        found = await view.list("H35.S01", include_acked=True)
        assert [d.message_id for d in found] == [headers(first)[H.MESSAGE_ID]]
        assert found[0].acked_at_ms == NOW + 10
        everything = await view.list(MAILBOX, include_acked=True)
        assert len(everything) == len({d.message_id for d in everything}) == 3

    async def test_a_full_disk_is_reported_once_and_the_view_catches_up_after(
        self,
        log: DurableLog,
        topics: Topics,
        path: Path,
        views: list[MailboxView],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """While its store has no room (SQLITE_FULL), the view's health names the full
        disk, with one warning however many tries fail; with room again it applies
        every record and is healthy."""
        view = await started(views, log, topics, path)
        real_apply = MailboxStore.apply
        full = asyncio.Event()
        full.set()
        tries: list[int] = []

        def no_room(store: MailboxStore, records: Sequence[Record]) -> Any:
            if full.is_set():
                tries.append(len(records))
                raise sqlite_full_error()
            return real_apply(store, records)

        monkeypatch.setattr(MailboxStore, "apply", no_room)
        with capture_logs() as logs:
            positions = await log.append(to_the_province(topics))
            for _ in range(100):
                if len(tries) >= 3:
                    break
                await asyncio.sleep(0.1)
            assert len(tries) >= 3
            assert view.health().startswith("disk full: no room to write")
            full.clear()
            assert await view.wait_applied(positions, 30)
        assert view.health() == "ok"
        assert [e["event"] for e in logs if e["log_level"] in ("warning", "error")] == [
            "mailbox view: disk full; writes fail until space is freed"
        ]
        assert len(await view.list(MAILBOX, include_acked=True)) == 3


@pytest.mark.usefixtures("no_blocking_loop")
class TestGauges:
    async def test_the_lag_reaches_zero_once_caught_up(
        self, log: DurableLog, topics: Topics, path: Path, views: list[MailboxView]
    ) -> None:
        """Measured from the tailer's positions, so Kafka's transaction markers (after
        every atomic append) do not count as records left to apply."""
        records = to_the_province(topics)
        assert len(records) == 4
        positions: list[Position] = []
        for batch in (records[:2], records[2:]):  # atomic, as the pipeline commits
            positions += await log.append(batch)
        gauges = Gauges()
        view = await started(views, log, topics, path, metrics=gauges, gauge_interval=0.1)
        assert await view.wait_applied(positions, 20)
        reported = len(gauges.states)
        for _ in range(50):
            if gauges.states[reported:]:
                break
            await asyncio.sleep(0.1)
        assert gauges.states[reported:][:1] == [(len(records), 0)]
        # and the age of the oldest unacknowledged entry (delivered just now)
        assert gauges.oldest is not None and 0 <= gauges.oldest < 60

    async def test_the_backlog_per_agency_reads_zero_once_acknowledged(
        self, log: DurableLog, topics: Topics, path: Path, views: list[MailboxView]
    ) -> None:
        """The province's three entries wait, then it acknowledges them: its gauge goes
        back to 0 (not its last value), and every local agency of the directory has one."""
        records = to_the_province(topics)
        await log.append(records)
        gauges = Gauges()
        view = await started(
            views, log, topics, path, metrics=gauges, gauge_interval=0.1, directory=directory
        )

        async def reported(expected: int) -> dict[str, tuple[int, float]]:
            for _ in range(100):
                if gauges.backlogs and gauges.backlogs[-1][MAILBOX][0] == expected:
                    return gauges.backlogs[-1]
                await asyncio.sleep(0.1)
            raise AssertionError(f"{MAILBOX} never reported {expected}: {gauges.backlogs[-1:]}")

        waiting = await reported(3)
        assert waiting["H35.S01"][0] == 1 and waiting["other"] == (0, 0.0)
        assert set(waiting) == {a.code for a in directory() if a.local} | {"other"}
        assert 0 <= waiting[MAILBOX][1] < 60
        backlog = await view.pending_by_agency()
        assert {b.agency: b.pending for b in backlog} == {MAILBOX: 3, "H35.S01": 1}
        await log.append([ack(topics, r) for r in for_the_province(records, "document")])
        await log.append([ack(topics, r) for r in for_the_province(records, "status")])
        assert (await reported(0))[MAILBOX] == (0, 0.0)

    async def test_a_restart_continues_from_the_stored_positions(
        self, log: DurableLog, topics: Topics, path: Path, views: list[MailboxView]
    ) -> None:
        records = to_the_province(topics)
        positions = await log.append(records[:2])
        first = await started(views, log, topics, path)
        assert await first.wait_applied(positions, 20)
        await first.stop()
        positions = await log.append(records[2:])
        second = await started(views, log, topics, path)
        assert await second.wait_applied(positions, 20)
        everything = await second.list(MAILBOX, include_acked=True)
        everything += await second.list("H35.S01", include_acked=True)
        assert sorted(d.message_id for d in everything) == sorted(
            headers(r)[H.MESSAGE_ID] for r in records
        )


def test_the_kind_index_is_added_to_an_existing_file(tmp_path: Path) -> None:
    """A file of the same schema version made before the index gets it on open (no
    rebuild), and the per-kind queries use it."""
    path = tmp_path / "mailbox.sqlite"
    MailboxStore(path, TOPICS.mailbox, TOPICS.receipts).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX deliveries_kind")
        conn.execute("INSERT INTO positions VALUES ('p.mailbox', 0, 7)")
    conn.close()
    store = MailboxStore(path, TOPICS.mailbox, TOPICS.receipts)
    try:
        assert list(store.positions().values()) == [7]  # not rebuilt
        plan = store._conn.execute(
            "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM deliveries "
            "WHERE recipient = ? AND kind = ? AND acked_at_ms IS NULL",
            ("H35", "status"),
        ).fetchall()
        assert "deliveries_kind" in " ".join(str(row) for row in plan)
    finally:
        store.close()


@pytest.mark.usefixtures("no_blocking_loop")
class TestRecentBodies:
    async def test_the_view_holds_fresh_mail_until_it_is_acknowledged(
        self, log: DurableLog, topics: Topics, path: Path, views: list[MailboxView]
    ) -> None:
        """The bytes the view holds for a fetch are the log's; an acknowledgement in
        the log (made at any instance) lets them go."""
        records = to_the_province(topics)
        (doc,) = for_the_province(records, "document")
        view = await started(views, log, topics, path)
        assert await view.wait_applied(await log.append(records), 10)
        entry = await view.get(MAILBOX, headers(doc)[H.MESSAGE_ID])
        assert entry is not None
        record = await log.read_at(entry.topic, entry.partition, entry.offset)
        assert record is not None and record.value
        assert view.recent_body(entry) == record.value
        assert await view.wait_applied(await log.append([ack(topics, doc)]), 10)
        assert view.recent_body(entry) is None

    def test_an_acknowledgement_read_before_its_entry_comes_with_it(self, path: Path) -> None:
        """A rebuild may read a receipt before the entry it is about: the entry is
        then acknowledged as it is inserted, and said so (nothing to hold for it)."""
        store = MailboxStore(path, TOPICS.mailbox, TOPICS.receipts)
        try:
            (doc,) = for_the_province(to_the_province(TOPICS), "document")
            early = store.apply([as_record(ack(TOPICS, doc), 0)])
            assert (early.acks, early.acknowledged) == (1, [])
            entry = as_record(doc, 5)
            late = store.apply([entry])
            assert late.acknowledged == [Position(entry.topic, entry.partition, 5)]
        finally:
            store.close()
