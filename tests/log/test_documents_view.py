"""The document view on both backends: catching up, following, restarting, rebuilding.

The events are the pipeline's own (the real InboundProcessor, chained with
`events.link`) appended to a real log; nothing stands in for the log.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from broker.core.logrecords import NewRecord, Position, Record, TopicSpec
from broker.core.receipts import ReceiptKind
from broker.core.topics import Topics
from broker.log.embedded import EmbeddedLog
from broker.log.interface import DurableLog
from broker.views.audit import document_events
from broker.views.document_fold import Resolve
from broker.views.documents import DocumentsStore, DocumentsView
from tests.conftest import LogFactory
from tests.documents_kit import DOC_ID, NOI_VU, PROVINCE, T0, UNKNOWN, VP, Trail
from tests.edxml_samples import document, status


class Lag:
    """Records what the view reports (the Metrics hook it calls)."""

    def __init__(self) -> None:
        self.reported: list[int] = []

    def documents_view_lag(self, records: int) -> None:
        self.reported.append(records)


@pytest.fixture
async def log(make_log: LogFactory) -> DurableLog:
    return await make_log()


@pytest.fixture
async def topics(log: DurableLog, unique_prefix: str) -> Topics:
    topics = Topics.with_prefix(unique_prefix)
    await log.ensure_topics(
        [
            TopicSpec(topics.events, 3, 1024 * 1024),
            TopicSpec(topics.chains, 3, 1024 * 1024, compacted=True),
        ]
    )
    return topics


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "view" / "documents.sqlite"


async def started(
    views: list[DocumentsView], log: DurableLog, topics: Topics, path: Path, **kw: Any
) -> DocumentsView:
    """A view started on `path`, stopped at teardown."""
    view = DocumentsView(log, topics, path, **kw)
    views.append(view)
    await view.start()
    return view


def sent_and_answered(topics: Topics) -> Trail:
    """A document to three recipients (one unknown), acknowledged by one, which then
    sends a status 03; and a second document."""
    trail = Trail(topics)
    trail.submit(document(recipients=(VP, UNKNOWN, NOI_VU)), at_ms=T0, message_id="m-doc")
    trail.receipt(ReceiptKind.ACKNOWLEDGED, at_ms=T0 + 10, recipient="H35.S01", message_id="m-doc")
    trail.submit(status(sender=VP, code="03"), at_ms=T0 + 20, message_id="m-st")
    trail.submit(
        document(recipients=(NOI_VU,), document_id="D,2"),
        at_ms=T0 + 30,
        message_id="m-2",
        chain="inbound:1",
    )
    return trail


async def append(log: DurableLog, records: Sequence[NewRecord]) -> list[Position]:
    """Append as the pipeline commits (atomically); the positions of the events."""
    positions = await log.append(records)
    return [p for p, r in zip(positions, records, strict=True) if not r.topic.endswith("chains")]


def delete_store(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


@pytest.mark.usefixtures("no_blocking_loop")
class TestDocumentsView:
    async def test_start_catches_up_with_what_the_log_holds(
        self, log: DurableLog, topics: Topics, path: Path, views: list[DocumentsView]
    ) -> None:
        """Once started, the view answers for everything committed before: its trace is
        what the audit command reads from the log, its state the fold of it."""
        trail = sent_and_answered(topics)
        await append(log, trail.records)
        view = await started(views, log, topics, path)
        assert view.ready
        assert await view.trace(DOC_ID) == await document_events(log, topics, DOC_ID)
        state = await view.state(DOC_ID)
        assert state is not None and state.sender == PROVINCE
        vp, unknown, noi_vu = state.recipients
        assert vp.acknowledged_at_ms == T0 + 10 and vp.latest_status.code == "03"  # type: ignore[union-attr]
        assert unknown.route == "refused" and unknown.latest_status.code == "02"  # type: ignore[union-attr]
        assert noi_vu.route == "mailbox" and noi_vu.latest_status is None
        assert [d["document_id"] for d in await view.sent_by([PROVINCE])] == ["D,2", DOC_ID]
        assert await view.state("D,nothing") is None

    async def test_follows_the_log_and_reads_its_own_writes(
        self, log: DurableLog, topics: Topics, path: Path, views: list[DocumentsView]
    ) -> None:
        view = await started(views, log, topics, path)
        assert await view.state(DOC_ID) is None
        trail = Trail(topics)
        positions = await append(
            log, trail.submit(document(recipients=(VP,)), at_ms=T0, message_id="m-doc")
        )
        assert await view.wait_applied(positions, 20)
        state = await view.state(DOC_ID)
        assert state is not None and state.recipients[0].delivered_at_ms is None
        positions = await append(
            log,
            trail.receipt(
                ReceiptKind.FETCHED, at_ms=T0 + 1, recipient="H35.S01", message_id="m-doc"
            ),
        )
        assert await view.wait_applied(positions, 20)
        state = await view.state(DOC_ID)
        assert state is not None and state.recipients[0].delivered_at_ms == T0 + 1

    async def test_wait_applied_gives_up_after_its_timeout(
        self, log: DurableLog, topics: Topics, path: Path, views: list[DocumentsView]
    ) -> None:
        view = await started(views, log, topics, path)
        assert not await view.wait_applied([Position(topics.events, 0, 10_000)], 0.3)

    async def test_a_restart_continues_from_the_stored_positions(
        self, log: DurableLog, topics: Topics, path: Path, views: list[DocumentsView]
    ) -> None:
        """The restarted view reads only what came after its stored positions: rows
        removed from its file behind its back stay removed, and nothing is doubled."""
        trail = Trail(topics)
        await append(log, trail.submit(document(recipients=(VP,)), at_ms=T0, message_id="m-doc"))
        first = await started(views, log, topics, path)
        await first.stop()
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM events WHERE type = 'routed'")
        conn.close()
        later = trail.receipt(
            ReceiptKind.FETCHED, at_ms=T0 + 1, recipient="H35.S01", message_id="m-doc"
        )
        await append(log, later)
        second = await started(views, log, topics, path)
        trace = await second.trace(DOC_ID)
        assert [e["type"] for e in trace] == ["accepted", "delivered"]
        assert len({(e["chain"], e["seq"]) for e in trace}) == len(trace)

    async def test_deleting_the_file_rebuilds_it_from_the_log(
        self, log: DurableLog, topics: Topics, path: Path, views: list[DocumentsView]
    ) -> None:
        await append(log, sent_and_answered(topics).records)
        first = await started(views, log, topics, path)
        before = (await first.state(DOC_ID), await first.trace(DOC_ID))
        await first.stop()
        delete_store(path)
        second = await started(views, log, topics, path)
        assert (await second.state(DOC_ID), await second.trace(DOC_ID)) == before
        assert len(before[1]) == len(await document_events(log, topics, DOC_ID))

    async def test_the_lag_reaches_zero_once_caught_up(
        self, log: DurableLog, topics: Topics, path: Path, views: list[DocumentsView]
    ) -> None:
        """Measured from the tailer's positions, so Kafka's transaction markers (after
        every atomic append) do not count as events left to apply."""
        await append(log, sent_and_answered(topics).records)
        lag = Lag()
        await started(views, log, topics, path, metrics=lag)
        for _ in range(40):
            if lag.reported:
                break
            await asyncio.sleep(0.1)
        assert lag.reported[:1] == [0]


@pytest.mark.usefixtures("no_blocking_loop")
class TestLogOutage:
    async def test_the_view_waits_out_the_log_going_away(
        self, tmp_path: Path, unique_prefix: str, path: Path, views: list[DocumentsView]
    ) -> None:
        """Polls fail while the log is down; the view stays up and applies what comes
        once it is back (the embedded log can be closed and started again in place)."""
        log = EmbeddedLog(tmp_path / "log.sqlite", session_timeout=3.0)
        await log.start()
        try:
            topics = Topics.with_prefix(unique_prefix)
            await log.ensure_topics([TopicSpec(topics.events, 3, 1024 * 1024)])
            view = await started(views, log, topics, path)
            await log.close()
            await asyncio.sleep(0.5)
            assert view.ready
            await log.start()
            trail = Trail(topics)
            records = trail.submit(document(recipients=(VP,)), at_ms=T0, message_id="m-doc")
            positions = await log.append([r for r in records if r.topic == topics.events])
            assert await view.wait_applied(positions, 20)
            assert await view.state(DOC_ID) is not None
        finally:
            await log.close()


class TestFailedApply:
    """Without the blocking-loop check: the failure is logged with its traceback, which
    structlog's default console renderer (tests do not configure logging) formats with
    its locals on the loop, slower than the check allows."""

    async def test_an_apply_that_fails_is_read_again(
        self,
        log: DurableLog,
        topics: Topics,
        path: Path,
        views: list[DocumentsView],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A store that cannot write (a full disk) loses nothing: the view reads the
        records again from its stored positions."""
        view = await started(views, log, topics, path)
        real_apply = DocumentsStore.apply
        failed: list[int] = []

        def full_disk_once(
            store: DocumentsStore, records: Sequence[Record], resolve: Resolve | None = None
        ) -> int:
            if not failed:
                failed.append(len(records))
                raise sqlite3.OperationalError("database or disk is full")
            return real_apply(store, records, resolve)

        monkeypatch.setattr(DocumentsStore, "apply", full_disk_once)
        trail = sent_and_answered(topics)
        positions = await append(log, trail.records)
        assert await view.wait_applied(positions, 20)
        assert failed
        assert await view.trace(DOC_ID) == await document_events(log, topics, DOC_ID)
