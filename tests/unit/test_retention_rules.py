"""The retention rules as values: watermarks per partition, without any server."""

from __future__ import annotations

from broker.core.archived import ArchiveMark
from broker.core.logrecords import TopicPartition
from broker.core.retention import (
    DAY_MS,
    PartitionState,
    cutoff_ms,
    events_cutoff,
    mailbox_done_below,
    plan,
    receipts_cutoff,
    watermark,
)

TP = TopicPartition("p.mailbox", 0)


def mark(through: int, tp: TopicPartition = TP) -> ArchiveMark:
    return ArchiveMark(tp, through, "docbroker-2026-11.zip", "ab" * 32, 0)


class TestCutoff:
    def test_zero_days_keeps_forever(self) -> None:
        """0 days: no cutoff at all."""
        assert cutoff_ms(10 * DAY_MS, 0) is None

    def test_fractions_of_a_day(self) -> None:
        """Days may be fractions: 2 seconds is 2/86400 of a day."""
        assert cutoff_ms(100_000, 2 / 86400) == 98_000


class TestWatermark:
    def test_the_lowest_limit_wins(self) -> None:
        """Aged below 8, done below 5: only 0–4 may go."""
        assert watermark(0, 10, [8, 5], mark=None, require_archive=False) == 5

    def test_an_archive_is_required_by_default_and_no_mark_removes_nothing(self) -> None:
        """With require_archive, a partition without an archive mark keeps everything."""
        assert watermark(3, 10, [8], mark=None, require_archive=True) == 3

    def test_the_archive_mark_caps(self) -> None:
        """Records at or above the mark are not in any archive: they stay."""
        assert watermark(0, 10, [8], mark=mark(6), require_archive=True) == 6
        assert watermark(0, 10, [4], mark=mark(6), require_archive=True) == 4

    def test_never_past_the_end_nor_back_before_the_start(self) -> None:
        """A limit beyond the end is the end; one below the start is the start."""
        assert watermark(0, 10, [99], mark=None, require_archive=False) == 10
        assert watermark(7, 10, [2], mark=None, require_archive=False) == 7


class TestMailbox:
    def test_an_unacknowledged_entry_blocks_its_partition_however_old(self) -> None:
        """Entries 0–2 acknowledged and aged, entry 3 never fetched: 0–2 go, 3 stays
        and so does everything after it."""
        done = mailbox_done_below(first_pending=3, view_position=9)
        states = {TP: PartitionState(0, 9, done_below=done)}
        assert plan(states, {TP: mark(9)}, require_archive=True, archived_topics={TP.topic}) == {
            TP: 3
        }

    def test_nothing_the_view_has_not_read_goes(self) -> None:
        """Every entry the view holds is acknowledged: the limit is what it has read."""
        assert mailbox_done_below(first_pending=None, view_position=6) == 6


class TestPlan:
    def test_only_partitions_that_move_are_planned(self) -> None:
        """A partition whose watermark is its start is left out."""
        other = TopicPartition("p.mailbox", 1)
        states = {
            TP: PartitionState(0, 10, aged_below=4, done_below=7),
            other: PartitionState(5, 10, aged_below=5, done_below=9),
        }
        assert plan(states, {}, require_archive=False, archived_topics={TP.topic}) == {TP: 4}

    def test_an_archive_is_required_only_of_the_topics_it_holds(self) -> None:
        """inbound is not archived (its package is in the delivered envelope): processed
        and aged, it goes without a mark; the mailbox without one keeps everything."""
        inbound = TopicPartition("p.inbound", 0)
        states = {
            TP: PartitionState(0, 10, aged_below=10, done_below=10),
            inbound: PartitionState(0, 10, aged_below=6, done_below=8),
        }
        assert plan(states, {}, require_archive=True, archived_topics={TP.topic}) == {inbound: 6}


class TestEventsAndReceipts:
    def test_one_cutoff_for_every_events_partition(self) -> None:
        """The oldest unarchived event of any partition holds the cutoff for all, so a
        chain spread over the partitions keeps an unbroken suffix."""
        a, b = TopicPartition("p.events", 0), TopicPartition("p.events", 1)
        assert events_cutoff(5_000, {a: 3_000, b: None}, require_archive=True) == 3_000
        assert events_cutoff(5_000, {a: 3_000, b: None}, require_archive=False) == 5_000

    def test_events_kept_forever_by_default(self) -> None:
        """No age cutoff (events_days = 0): nothing goes, archive or not."""
        assert events_cutoff(None, {}, require_archive=False) is None

    def test_receipts_outlive_the_entries_they_are_about(self) -> None:
        """A receipt is kept while a mailbox or upstream record at least as old stays."""
        assert receipts_cutoff(9_000, [4_000, None, 7_000]) == 4_000
        assert receipts_cutoff(None, [4_000]) is None
