"""What `docbroker archive export` reads from the log and writes back to it.

It reads the archived topics (mailbox, receipts, events) from where the archive
folder ends, up to the end offsets taken when the export starts, and the latest
archive mark of each partition; it appends marks (`broker.core.archived`) once a
file is written, synced and verified.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from broker.core.archive import ROLES
from broker.core.archived import ArchiveMark, latest_marks, mark_record
from broker.core.logrecords import Record, TopicPartition
from broker.core.topics import Topics
from broker.log.interface import DurableLog
from broker.views.audit import read_all


def archived_topics(topics: Topics) -> dict[str, str]:
    """Full topic name -> role, of the topics an archive holds."""
    return {getattr(topics, role): role for role in ROLES}


async def read_tails(
    log_: DurableLog, topics: Sequence[str], starts: Mapping[TopicPartition, int]
) -> tuple[dict[TopicPartition, list[Record]], dict[TopicPartition, int]]:
    """Each partition's records from `starts` (0 when not named) up to its end offset
    now, in offset order; and those end offsets."""
    ends = await log_.end_offsets(list(topics))
    out: dict[TopicPartition, list[Record]] = {tp: [] for tp in ends}
    async with log_.tailer(list(topics), dict(starts)) as tailer:
        while not await tailer.caught_up(ends):
            for record in await tailer.poll(0.5, 5000):
                if record.offset < ends.get(record.tp, 0):
                    out.setdefault(record.tp, []).append(record)
    for records in out.values():
        records.sort(key=lambda r: r.offset)
    return out, ends


async def read_marks(log_: DurableLog, topics: Topics) -> Mapping[TopicPartition, ArchiveMark]:
    return latest_marks(await read_all(log_, topics.archived))


async def append_marks(log_: DurableLog, topics: Topics, marks: Sequence[ArchiveMark]) -> None:
    if marks:
        await log_.append([mark_record(topics.archived, m) for m in marks])
