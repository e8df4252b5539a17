"""Mail waiting per agency: the store's backlog, the gauge values over the directory's
agencies, and the gauges as Prometheus reads them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker.core.receipts import Receipt, ReceiptKind
from broker.core.records import H
from broker.directory.book import Directory
from broker.metrics import Metrics
from broker.views.backlog import OTHER, AgencyBacklog, BacklogGauge, backlog_gauges
from broker.views.mailbox import MailboxStore
from tests.edxml_samples import document
from tests.processing_kit import NOW, TOPICS, as_record, consumed, ctx, directory, processor

PROVINCE, VP, SO_TC = "000.00.00.H35", "000.00.01.H35", "000.00.02.H35"


def local_codes(d: Directory) -> set[str]:
    return {a.code for a in d if a.local}


class TestBacklogGauges:
    def test_every_local_agency_reads_zero_when_nothing_waits(self) -> None:
        """A backlog that went away reads 0, not the value it had last."""
        d = directory()
        gauges = backlog_gauges([], d, NOW)
        assert set(gauges) == local_codes(d) | {OTHER}
        assert set(gauges.values()) == {BacklogGauge(0, 0.0)}

    def test_a_waiting_agency_has_its_count_and_the_age_of_its_oldest(self) -> None:
        gauges = backlog_gauges([AgencyBacklog("H35.S01", 3, NOW - 90_000)], directory(), NOW)
        assert gauges["H35.S01"] == BacklogGauge(3, 90.0)
        assert gauges["H35"] == BacklogGauge(0, 0.0)

    def test_codes_the_directory_does_not_name_are_folded_into_other(self) -> None:
        """The label set stays the directory's, whatever codes the mailboxes hold."""
        backlog = [
            AgencyBacklog("X99.TYPO", 2, NOW - 5_000),
            AgencyBacklog("Y00.GONE", 1, NOW - 60_000),
        ]
        gauges = backlog_gauges(backlog, directory(), NOW)
        assert gauges[OTHER] == BacklogGauge(3, 60.0)
        assert "X99.TYPO" not in gauges and "Y00.GONE" not in gauges

    def test_a_qcvn_102_code_counts_for_its_agency(self) -> None:
        backlog = [AgencyBacklog("H35.S01", 1, NOW - 1_000), AgencyBacklog(VP, 2, NOW - 4_000)]
        assert backlog_gauges(backlog, directory(), NOW)["H35.S01"] == BacklogGauge(3, 4.0)

    def test_an_agency_outside_the_province_with_mail_waiting_keeps_its_code(self) -> None:
        d = directory()
        outside = next(a for a in d if not a.local)
        gauges = backlog_gauges([AgencyBacklog(outside.code, 1, NOW)], d, NOW)
        assert gauges[outside.code] == BacklogGauge(1, 0.0)

    def test_a_clock_that_stepped_back_gives_no_negative_age(self) -> None:
        assert AgencyBacklog("H35", 1, NOW + 10_000).age_seconds(NOW) == 0


def samples(metrics: Metrics, name: str) -> dict[str, float]:
    text = metrics.render().decode()
    return {
        s.labels["agency"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


class TestBacklogMetrics:
    PENDING = "docbroker_mailbox_pending_by_agency"
    OLDEST = "docbroker_mailbox_oldest_unacknowledged_by_agency_seconds"

    def test_the_gauges_follow_the_backlog_and_drop_removed_agencies(self) -> None:
        metrics = Metrics()
        metrics.mailbox_backlog({"H35": (2, 30.0), "H35.S01": (1, 5.0), OTHER: (0, 0.0)})
        assert samples(metrics, self.PENDING) == {"H35": 2, "H35.S01": 1, OTHER: 0}
        assert samples(metrics, self.OLDEST) == {"H35": 30.0, "H35.S01": 5.0, OTHER: 0}
        metrics.mailbox_backlog({"H35": (0, 0.0), OTHER: (0, 0.0)})  # H35.S01 left
        assert samples(metrics, self.PENDING) == {"H35": 0, OTHER: 0}
        assert samples(metrics, self.OLDEST) == {"H35": 0, OTHER: 0}


def delivered(data: bytes, message_id: str, at_ms: int, offset: int) -> list:
    """The mailbox records the pipeline makes of one submission, delivered at `at_ms`."""
    out = processor().process(consumed(data, message_id=message_id), ctx())
    mail = [r for r in out.records if r.topic == TOPICS.mailbox]
    return [replace(as_record(r, offset + i), timestamp_ms=at_ms) for i, r in enumerate(mail)]


@pytest.fixture
def store(tmp_path: Path):
    store = MailboxStore(tmp_path / "mailbox.sqlite", TOPICS.mailbox, TOPICS.receipts)
    yield store
    store.close()


class TestPendingByAgency:
    def test_the_longest_waiting_first_and_acknowledged_entries_leave(
        self, store: MailboxStore
    ) -> None:
        """VP has two documents, the older delivered at T-60 s; Sở Tài chính one since
        T-30 s. Once VP acknowledges its older one, both have waited since T-30 s (then
        the order is the codes')."""
        to_vp_old = delivered(document(recipients=(VP,)), "m-1", NOW - 60_000, 0)
        to_both = delivered(
            document(recipients=(VP, SO_TC), document_id=f"{PROVINCE},2026/11/25,8/VP"),
            "m-2",
            NOW - 30_000,
            10,
        )
        store.apply([*to_vp_old, *to_both])
        assert store.pending_by_agency() == [
            AgencyBacklog("H35.S01", 2, NOW - 60_000),
            AgencyBacklog("H35.S02", 1, NOW - 30_000),
        ]
        h = {k: v.decode() for k, v in to_vp_old[0].headers}
        receipt = Receipt(
            ReceiptKind.ACKNOWLEDGED,
            NOW,
            h[H.MESSAGE_ID],
            h[H.DOCUMENT_ID],
            h[H.SENDER],
            h[H.RECIPIENT],
            h[H.TRACE_ID],
            h[H.KIND],
        )
        store.apply([as_record(receipt.to_record(TOPICS.receipts), 20)])
        assert store.pending_by_agency() == [
            AgencyBacklog("H35.S01", 1, NOW - 30_000),
            AgencyBacklog("H35.S02", 1, NOW - 30_000),
        ]
