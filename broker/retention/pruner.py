"""The pruner: gathers what the rules need (log starts and ends, committed offsets,
offsets by time, the mailbox view's pending entries, archive marks), asks the pure
rules (`broker.core.retention`) for each partition's low watermark, and removes the
records below it (`DurableLog.delete_before`).

One prune 30 s after start (or one interval, if shorter), then every
`retention.interval` seconds. Several docbroker instances may prune the same log:
the rules give each the same watermarks (or lower ones, from a view still catching
up), and removing below a start removes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

import structlog

from broker.clock import now_ms
from broker.config import RetentionSettings
from broker.core.archive import ROLES
from broker.core.archived import ArchiveMark, latest_marks
from broker.core.errors import DocbrokerError
from broker.core.logrecords import TopicPartition
from broker.core.retention import (
    PartitionState,
    cutoff_ms,
    events_cutoff,
    mailbox_done_below,
    plan,
    receipts_cutoff,
)
from broker.core.topics import Topics
from broker.log.interface import DurableLog
from broker.views.audit import read_all
from broker.views.mailbox import MailboxView

log = structlog.get_logger(__name__)

FIRST_PRUNE_AFTER = 30.0  # seconds after start (or the interval, if shorter)

States = dict[TopicPartition, PartitionState]


class PruneMetrics(Protocol):
    def log_pruned(self, removed: Mapping[str, int], seconds: float) -> None: ...


class Pruner:
    """Prunes the log of one docbroker instance by the configured rules."""

    def __init__(
        self,
        log_: DurableLog,
        topics: Topics,
        view: MailboxView,
        settings: RetentionSettings,
        metrics: PruneMetrics,
        *,
        pipeline_group: str,
        upstream_group: str,
    ) -> None:
        self.log_ = log_
        self.topics = topics
        self.view = view
        self.settings = settings
        self.metrics = metrics
        self.pipeline_group = pipeline_group
        self.upstream_group = upstream_group
        self._task: asyncio.Task[None] | None = None
        self.last: dict[str, int] = {}  # records removed by the last prune, per topic

    # -- the periodic task

    async def start(self) -> None:
        if self.settings.enabled:
            self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        # The first prune waits a little: not in the middle of the start-up work (views
        # catching up, the pipeline taking its partitions).
        await asyncio.sleep(min(self.settings.interval, FIRST_PRUNE_AFTER))
        while True:
            try:
                await self.prune()
            except DocbrokerError as exc:  # the log away, a view not started: next time
                log.warning("retention: prune failed; trying again later", error=str(exc))
            except Exception:
                log.exception("retention: prune failed; trying again later")
            await asyncio.sleep(self.settings.interval)

    # -- one prune

    async def prune(self, now: int | None = None) -> dict[str, int]:
        """Remove what the rules allow now; records removed per topic."""
        began = time.monotonic()
        now = now_ms() if now is None else now
        marks = latest_marks(await read_all(self.log_, self.topics.archived))
        t, s = self.topics, self.settings
        starts = await self.log_.start_offsets(prunable(t))
        ends = await self.log_.end_offsets(prunable(t))
        states: States = {}
        states |= await self._mailbox(now, starts, ends)
        inbound, upstream = cutoff_ms(now, s.inbound_days), cutoff_ms(now, s.upstream_days)
        states |= await self._after_group(t.inbound, self.pipeline_group, inbound, starts, ends)
        states |= await self._after_group(t.upstream, self.upstream_group, upstream, starts, ends)
        states |= await self._aged(t.rejected, cutoff_ms(now, s.rejected_days), starts, ends)
        states |= await self._events(now, marks, starts, ends)
        require = self.settings.require_archive
        archived = {getattr(t, role) for role in ROLES}  # what archive export holds
        planned = plan(states, marks, require_archive=require, archived_topics=archived)
        # receipts last: they stay while a mailbox or upstream record as old is kept
        receipts = await self._receipts(now, planned, starts, ends)
        planned |= plan(receipts, marks, require_archive=require, archived_topics=archived)
        removed: dict[str, int] = {}
        if planned:
            await self.log_.delete_before(planned)
            for tp, low in planned.items():
                removed[tp.topic] = removed.get(tp.topic, 0) + low - starts[tp]
        return self._done(removed, began)

    def _done(self, removed: dict[str, int], began: float) -> dict[str, int]:
        seconds = time.monotonic() - began
        self.metrics.log_pruned(removed, seconds)
        self.last = removed
        if removed:
            log.info("retention: log pruned", removed=removed, seconds=round(seconds, 3))
        return removed

    async def _mailbox(
        self, now: int, starts: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
    ) -> States:
        cutoff = cutoff_ms(now, self.settings.mailbox_days)
        if cutoff is None:
            return {}
        pending, applied = await self.view.retained(cutoff)
        return {
            tp: PartitionState(
                starts[tp], end, done_below=mailbox_done_below(pending.get(tp), applied.get(tp, 0))
            )
            for tp, end in ends.items()
            if tp.topic == self.topics.mailbox
        }

    async def _aged(
        self,
        topic: str,
        cutoff: int | None,
        starts: Mapping[TopicPartition, int],
        ends: Mapping[TopicPartition, int],
    ) -> States:
        if cutoff is None:
            return {}
        aged = await self.log_.offsets_for_time([topic], cutoff)
        return {tp: PartitionState(starts[tp], ends[tp], aged_below=at) for tp, at in aged.items()}

    async def _after_group(
        self,
        topic: str,
        group: str,
        cutoff: int | None,
        starts: Mapping[TopicPartition, int],
        ends: Mapping[TopicPartition, int],
    ) -> States:
        """Aged, and below what the group that reads the topic has committed."""
        states = await self._aged(topic, cutoff, starts, ends)
        if not states:
            return {}
        done = await self.log_.committed_offsets(group, [topic])
        return {
            tp: PartitionState(st.start, st.end, st.aged_below, done.get(tp, 0))
            for tp, st in states.items()
        }

    async def _events(
        self,
        now: int,
        marks: Mapping[TopicPartition, ArchiveMark],
        starts: Mapping[TopicPartition, int],
        ends: Mapping[TopicPartition, int],
    ) -> States:
        age = cutoff_ms(now, self.settings.events_days)
        if age is None:
            return {}
        events = [tp for tp in ends if tp.topic == self.topics.events]
        unarchived = {}
        if self.settings.require_archive:
            unarchived = {
                tp: await self._unarchived_at(tp, marks.get(tp), ends[tp]) for tp in events
            }
        cutoff = events_cutoff(age, unarchived, require_archive=self.settings.require_archive)
        return await self._aged(self.topics.events, cutoff, starts, ends)

    async def _unarchived_at(
        self, tp: TopicPartition, mark: ArchiveMark | None, end: int
    ) -> int | None:
        """When the partition's first event not in an archive was written (0 without a
        mark: nothing of any events partition goes then); None when all are archived."""
        if mark is None:
            return 0
        if mark.through >= end:
            return None
        return await self._timestamp_from(tp, mark.through, end)

    async def _timestamp_from(self, tp: TopicPartition, offset: int, end: int) -> int:
        """The timestamp of the first record at or after `offset` (transaction markers
        hold no record); 0 when none is found close by (the caller then keeps all)."""
        for at in range(offset, min(end, offset + 8)):
            record = await self.log_.read_at(tp.topic, tp.partition, at)
            if record is not None:
                return record.timestamp_ms
        return 0

    async def _receipts(
        self,
        now: int,
        planned: Mapping[TopicPartition, int],
        starts: Mapping[TopicPartition, int],
        ends: Mapping[TopicPartition, int],
    ) -> States:
        """Aged, committed by the pipeline, and older than the oldest mailbox and upstream
        record still held after this prune."""
        age = cutoff_ms(now, self.settings.receipts_days)
        if age is None:
            return {}
        kept: list[int | None] = []
        for tp, end in ends.items():
            if tp.topic in (self.topics.mailbox, self.topics.upstream):
                low = planned.get(tp, starts[tp])
                kept.append(None if low >= end else await self._timestamp_from(tp, low, end))
        cutoff = receipts_cutoff(age, kept)
        return await self._after_group(
            self.topics.receipts, self.pipeline_group, cutoff, starts, ends
        )


def prunable(topics: Topics) -> Sequence[str]:
    """The topics retention may prune (the compacted ones never)."""
    return [
        topics.mailbox,
        topics.inbound,
        topics.upstream,
        topics.receipts,
        topics.rejected,
        topics.events,
    ]
