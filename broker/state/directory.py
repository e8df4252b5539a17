"""The agency directory as every instance follows it, and reading and changing it in
the log.

Each docbroker instance reads the whole `directory` topic at start (it is small) and
keeps following it, so `agencies add/update/suspend` and credential changes reach
every running instance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from broker.clock import now_ms
from broker.core.logrecords import Position, Record
from broker.directory.book import Directory
from broker.directory.model import Agency
from broker.directory.records import agency_record, apply_record
from broker.log.interface import DurableLog
from broker.state.followed import FollowedTopic

log = structlog.get_logger(__name__)


class DirectoryState:
    """The directory as of now; `current` is an immutable snapshot, swapped whole."""

    def __init__(self, log_: DurableLog, topic: str) -> None:
        self.current = Directory()
        self.follower = FollowedTopic(log_, topic, self._apply, "directory")

    def _apply(self, records: Sequence[Record]) -> None:
        directory = self.current
        for record in records:
            directory = apply_record(directory, record)
        self.current = directory


async def read_directory(log_: DurableLog, topic: str) -> Directory:
    """The whole directory as the topic holds it now."""
    directory = Directory()
    ends = await log_.end_offsets([topic])
    async with log_.tailer([topic], {}) as tailer:
        while not await tailer.caught_up(ends):
            for record in await tailer.poll(0.2, 1000):
                directory = apply_record(directory, record)
    return directory


async def put_agencies(
    log_: DurableLog, topic: str, agencies: Sequence[Agency], actor: str
) -> list[Position]:
    """Write agencies (atomically); they replace any record with the same code."""
    at = now_ms()
    return await log_.append([agency_record(topic, a, actor, at) for a in agencies])


async def change_agencies(
    log_: DurableLog,
    topic: str,
    change: Callable[[Directory], Sequence[Agency]],
    actor: str,
) -> list[Agency]:
    """Read the directory, compute changed agencies from it, write them.

    Changes from one administrator at a time are assumed (like `agencies update`):
    two concurrent changes of one agency keep the last one written."""
    changed = list(change(await read_directory(log_, topic)))
    if changed:
        await put_agencies(log_, topic, changed, actor)
    return changed
