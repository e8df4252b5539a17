"""Retention rules: how far each partition of the log may be pruned. Pure.

docbroker removes records itself (Kafka topics keep everything, `retention.ms=-1`);
these rules decide how far. For each partition they give a *low watermark*: every
record below it may go, nothing at or above it does. Per topic:

- mailbox: below the first entry not both acknowledged and acknowledged longer ago
  than `mailbox_days`, and below what the mailbox view has read (an unfetched or
  unacknowledged entry is never removed, however old: it blocks its partition);
- inbound: below the pipeline's committed offset, and older than `inbound_days`;
- upstream: below the upstream sender's committed offset (the axis confirmed, or the
  envelope was dead-lettered), and older than `upstream_days`;
- receipts: below the pipeline's committed offset, older than `receipts_days`, and
  older than the oldest mailbox and upstream record kept (the mailbox view is rebuilt
  from both topics: a receipt about a kept entry stays);
- rejected: older than `rejected_days`;
- events: older than `events_days`, one time cutoff for every partition (a chain's
  events spread over the partitions: what remains of each is a suffix, verified from
  its first event still held), and with `require_archive` no later than the oldest
  unarchived event of any partition;
- compacted topics (directory, dedup, chains, archived): never.

A topic whose days are 0 keeps everything. With `require_archive`, the watermark of
every partition of an archived topic (mailbox, receipts, events: what
`docbroker archive export` writes, `broker.core.archive.ROLES`) is also capped by the
partition's archive mark (`broker.core.archived`): such a partition without a mark
loses nothing. The other topics are not archived and go by their own rules: inbound
once processed (its package is in the delivered envelope, its digest in the
`accepted` event), upstream once the axis confirmed, rejected by age.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from broker.core.archived import ArchiveMark
from broker.core.logrecords import TopicPartition

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Ages:
    """How long records are kept past the moment they are done with, in days (0 =
    forever; fractions are allowed, which is how the tests prune within seconds)."""

    mailbox_days: float = 30
    inbound_days: float = 30
    upstream_days: float = 30
    receipts_days: float = 30
    rejected_days: float = 90
    events_days: float = 0
    require_archive: bool = True


def cutoff_ms(now_ms: int, days: float) -> int | None:
    """Records stamped before this may go by age; None when kept forever (0 days)."""
    if days <= 0:
        return None
    return now_ms - int(days * DAY_MS)


def watermark(
    start: int,
    end: int,
    limits: Iterable[int],
    *,
    mark: ArchiveMark | None,
    require_archive: bool,
) -> int:
    """The lowest of the limits (each "nothing at or above this may go"), capped by the
    end and, when an archive is required, by the archive mark (no mark: nothing goes);
    never below the partition's start (a watermark never moves back)."""
    cap = min([end, *limits])
    if require_archive:
        cap = min(cap, mark.through if mark is not None else start)
    return max(start, cap)


@dataclass(frozen=True, slots=True)
class PartitionState:
    """What is known of one partition when the rules run."""

    start: int  # log start offset
    end: int  # next offset
    aged_below: int | None = None  # first offset stamped at or after the cutoff
    done_below: int | None = None  # first offset not done with (committed, unacknowledged)


def plan(
    states: Mapping[TopicPartition, PartitionState],
    marks: Mapping[TopicPartition, ArchiveMark],
    *,
    require_archive: bool,
    archived_topics: Collection[str],
) -> dict[TopicPartition, int]:
    """The partitions whose watermark is above their start, with that watermark (the
    records to remove). Partitions of a topic kept forever are not passed in; a limit
    a topic's rule does not have is None; `require_archive` caps the partitions of
    `archived_topics` only."""
    out = {}
    for tp, s in states.items():
        limits = [v for v in (s.aged_below, s.done_below) if v is not None]
        required = require_archive and tp.topic in archived_topics
        low = watermark(s.start, s.end, limits, mark=marks.get(tp), require_archive=required)
        if low > s.start:
            out[tp] = low
    return out


def mailbox_done_below(first_pending: int | None, view_position: int) -> int:
    """The mailbox's limit: the first entry not acknowledged-and-aged (None when every
    entry the view holds is), and nothing the view has not read yet."""
    return view_position if first_pending is None else min(first_pending, view_position)


def events_cutoff(
    now_cutoff: int | None,
    unarchived_at: Mapping[TopicPartition, int | None],
    *,
    require_archive: bool,
) -> int | None:
    """The one time cutoff for all events partitions: the age rule's, and with
    `require_archive` no later than the oldest unarchived event of any partition
    (`unarchived_at`: the timestamp of the first event at or above the partition's
    mark, None when everything is archived; a partition without a mark is given
    its first event's timestamp, or 0). None: nothing goes."""
    if now_cutoff is None:
        return None
    if not require_archive:
        return now_cutoff
    held = [at for at in unarchived_at.values() if at is not None]
    return min([now_cutoff, *held])


def receipts_cutoff(now_cutoff: int | None, oldest_kept: Iterable[int | None]) -> int | None:
    """Receipts older than the age rule's cutoff and than every mailbox and upstream
    record kept (`oldest_kept`: the timestamp of each such partition's first kept
    record, None for a partition that keeps none)."""
    if now_cutoff is None:
        return None
    return min([now_cutoff, *(at for at in oldest_kept if at is not None)])
