"""Following a compacted topic: the directory, chain heads (into memory), the dedup
index (into its SQLite file).

Each docbroker instance reads such a topic at startup, from the start or from the
positions its store kept (`positions`), and keeps following it. `caught_up()` waits
until everything committed so far is applied: the pipeline calls it when it takes
over a partition, so that it starts from the state its predecessor committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog

from broker.core.errors import BackendUnavailable
from broker.core.logrecords import Record, TopicPartition
from broker.log.interface import DurableLog, Tailer

log = structlog.get_logger(__name__)


class FollowedTopic:
    """Applies every record of a topic, in order, with `apply`, from the start on (or
    from the next offsets `positions()` gives at start, called in a thread: what a
    store applied before)."""

    def __init__(
        self,
        log_: DurableLog,
        topic: str,
        apply: Callable[[Sequence[Record]], Awaitable[None] | None],
        name: str,
        *,
        positions: Callable[[], Mapping[TopicPartition, int]] | None = None,
    ) -> None:
        self.log_ = log_
        self.topic = topic
        self.apply = apply
        self.name = name
        self.positions = positions
        self.loaded = False
        self._tailer: Tailer | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        start = await asyncio.to_thread(self.positions) if self.positions is not None else {}
        self._tailer = self.log_.tailer([self.topic], start)
        await self._tailer.start()
        await self.caught_up()
        self.loaded = True
        self._task = asyncio.create_task(self._follow(), name=f"follow-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._tailer is not None:
            await self._tailer.close()

    async def caught_up(self, timeout: float = 60.0) -> None:
        """Return once every record committed before the call has been applied; fail
        when `timeout` seconds pass without a record (a long history read at start is
        progress, not a failure)."""
        assert self._tailer is not None
        ends = await self.log_.end_offsets([self.topic])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._lock:
            while not await self._tailer.caught_up(ends):
                if loop.time() > deadline:
                    raise BackendUnavailable(
                        f"{self.name} did not catch up: nothing read for {timeout:.0f} s"
                    )
                records = await self._tailer.poll(0.2, 1000)
                if records:
                    await self._applied(records)
                    deadline = loop.time() + timeout

    async def _applied(self, records: Sequence[Record]) -> None:
        """`apply` may be a coroutine function (the dedup index writes in a thread)."""
        result = self.apply(records)
        if inspect.isawaitable(result):
            await result

    async def _follow(self) -> None:
        assert self._tailer is not None
        while True:
            try:
                async with self._lock:
                    records = await self._tailer.poll(0.5, 1000)
                    if records:
                        await self._applied(records)
                await asyncio.sleep(0)
            except BackendUnavailable as exc:
                log.warning("view: log unavailable", view=self.name, error=str(exc))
                await asyncio.sleep(1.0)
