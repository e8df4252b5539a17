"""Group commit: appends that arrive while a transaction is on its way share the next.

One transactional producer per instance appends the door's submissions (a package,
its dedup claims, its audit event: all or nothing). One transaction at a time took
each submission's round trips in turn, so the instance took in only as many per
second as one transaction's latency allows, whatever its load. Here, whoever comes
while a transaction is in flight waits for the next one, which carries them all:
each caller still gets its own records' positions, in its own order, and all or
none of its records are appended. A group the log refuses as too large is appended
again entry by entry (the refusal aborted it: nothing of it is visible), so that
only the entry that is too large is refused; any other failure fails the group,
each caller seeing it (its outcome may be unknown: a caller retries, as before).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from broker.core.errors import RecordTooLarge
from broker.core.logrecords import NewRecord, Position

Commit = Callable[[Sequence[NewRecord]], Awaitable[list[Position]]]


@dataclass
class _Entry:
    records: list[NewRecord]
    done: asyncio.Future[list[Position]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def size(self) -> int:
        return sum(r.size for r in self.records)


class GroupCommit:
    """Appends through `commit` (one transaction per call), grouping waiting callers:
    at most `max_entries` callers and `max_bytes` (but at least one caller) a group."""

    def __init__(self, commit: Commit, *, max_entries: int = 64, max_bytes: int = 16 << 20):
        self._commit = commit
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._waiting: list[_Entry] = []
        self._task: asyncio.Task[None] | None = None

    async def append(self, records: Sequence[NewRecord]) -> list[Position]:
        entry = _Entry(list(records))
        self._waiting.append(entry)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="group-commit")
        return await entry.done

    async def _run(self) -> None:
        while self._waiting:
            group = self._next_group()
            if group:
                await self._append(group)

    def _next_group(self) -> list[_Entry]:
        """The next waiting callers (those that gave up before their turn left out)."""
        group: list[_Entry] = []
        size = 0
        while self._waiting and len(group) < self.max_entries:
            entry = self._waiting[0]
            if group and size + entry.size > self.max_bytes:
                break
            self._waiting.pop(0)
            if entry.done.cancelled():
                continue
            group.append(entry)
            size += entry.size
        return group

    async def _append(self, group: list[_Entry]) -> None:
        try:
            positions = await self._commit([r for e in group for r in e.records])
        except RecordTooLarge as exc:
            if len(group) == 1:
                _fail(group, exc)
                return
            for entry in group:  # aborted, nothing visible: each alone now
                await self._append([entry])
            return
        except Exception as exc:
            _fail(group, exc)
            return
        at = 0
        for entry in group:
            n = len(entry.records)
            if not entry.done.done():
                entry.done.set_result(positions[at : at + n])
            at += n


def _fail(group: list[_Entry], exc: BaseException) -> None:
    for entry in group:
        if not entry.done.done():
            entry.done.set_exception(exc)
