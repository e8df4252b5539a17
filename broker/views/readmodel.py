"""What a local read model needs besides its own tables.

A read model (the document view; the mailbox view keeps the same shape) is a
SQLite file built by tailing topics: a rebuildable cache, so a file of another
schema version is emptied and read again from the log. It stores the next
offset of every partition it applied in the transaction that applies the
records, so a restart continues where it stopped. The connection is used from
one thread only, and callers can wait until given log positions are applied
(to read their own writes).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import structlog

from broker.core.logrecords import Position, Record, TopicPartition
from broker.log.sqlite_store import (  # noqa: F401 - the views' helpers, kept here too
    POSITIONS_SCHEMA,
    open_store,
    store_position,
    stored_positions,
    transaction,
)

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class StoreThread:
    """The one thread a store's SQLite connection is used from.

    Calls carry the caller's context variables (bound log fields), which a bare
    `run_in_executor` would drop."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: context.run(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


class AppliedPositions:
    """The next offset a view will apply, per partition, and waiting for positions."""

    def __init__(self) -> None:
        self._next: dict[TopicPartition, int] = {}
        self._changed = asyncio.Condition()

    def reset(self, positions: Mapping[TopicPartition, int]) -> None:
        """Start from the positions stored with the view."""
        self._next = dict(positions)

    async def advance(self, records: Iterable[Record]) -> None:
        """Records are applied (and stored): wake whoever waits for them."""
        for r in records:
            self._next[r.tp] = max(self._next.get(r.tp, 0), r.offset + 1)
        async with self._changed:
            self._changed.notify_all()

    def applied(self, position: Position) -> bool:
        tp = TopicPartition(position.topic, position.partition)
        return self._next.get(tp, 0) > position.offset

    async def wait(self, positions: Iterable[Position], timeout: float) -> bool:
        """Whether every position was applied within `timeout` seconds."""
        wanted = list(positions)
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: all(map(self.applied, wanted)))
            except TimeoutError:
                return False
        return True
