"""A read model of the `events` topic kept current from the log: what the document
view and the statistics view share.

`EventsView` owns the store (opened, applied and queried in its own thread), a
tailer from the positions stored with it (a restart continues; deleting the file
rebuilds it from the log), the catching up at start (with progress for a CLI),
following in a task (the log going away is waited out; an apply that fails, a
full disk, restarts the tailer from the stored positions so that no event is
skipped), readiness, and waiting for given positions (read your own writes).
A subclass says how its store is opened and how records are applied.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Generic, ParamSpec, Protocol, TypeVar

import structlog

from broker.core.errors import BackendUnavailable, StorageFull
from broker.core.logrecords import Position, Record, TopicPartition
from broker.core.topics import Topics
from broker.log.interface import DurableLog, Tailer
from broker.log.sqlite_space import FullDisk, is_full, storage_full
from broker.views.readmodel import AppliedPositions, StoreThread

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
Progress = Callable[[int, int], None]  # (records applied so far, records behind at start)
LAG_EVERY = 5.0  # seconds between lag reports


class Store(Protocol):
    """What the view needs of its store besides applying records."""

    def positions(self) -> dict[TopicPartition, int]: ...

    def close(self) -> None: ...


S = TypeVar("S", bound=Store)


class EventsView(abc.ABC, Generic[S]):
    """Keeps a store current from the `events` topic; subclasses answer queries
    through `_run` (their store's thread)."""

    name = "events view"  # for log lines, errors and the thread's name
    batch = 500  # records per poll

    def __init__(
        self,
        log_: DurableLog,
        topics: Topics,
        path: Path,
        *,
        lag: Callable[[int], None] | None = None,
    ) -> None:
        self.log_ = log_
        self.topics = topics
        self.path = path
        self._lag = lag
        self._thread = StoreThread(self.name.replace(" ", "-"))
        self._store: S | None = None
        self._tailer: Tailer | None = None
        self._task: asyncio.Task[None] | None = None
        self._applied = AppliedPositions()
        self._ready = False
        self._space = FullDisk(self.name, path)

    @abc.abstractmethod
    def _open_store(self) -> S:
        """Open (or make) the store's file; called in the store's thread."""

    @abc.abstractmethod
    def _apply(self, store: S, records: Sequence[Record]) -> None:
        """Apply records and their positions in one transaction (the store's thread)."""

    @property
    def ready(self) -> bool:
        """Caught up with the log as it was at start (and following it, if asked)."""
        return self._ready

    def health(self) -> str:
        """ "ok", or why the view cannot keep up now (for /readyz)."""
        if not self._ready:
            return "not started"
        full = self._space.problem
        return str(full) if full is not None else "ok"

    async def start(self, progress: Progress | None = None, *, follow: bool = True) -> None:
        """Open the store, apply what the log holds now, then (`follow`) follow it in a
        task. `progress(applied, behind)` hears after each batch of the catching up how
        many records it applied and how many were behind at start (a CLI says so)."""
        try:
            self._store = await self._thread.run(self._open_store)
            await self.catch_up(progress)
        except BaseException:
            await self.stop()
            raise
        if follow:
            self._task = asyncio.create_task(self._follow(), name=self.name)
        self._ready = True

    async def catch_up(self, progress: Progress | None = None) -> int:
        """Apply the events the log holds now; how many records were read."""
        await self._open_tailer()
        ends = await self.log_.end_offsets([self.topics.events])
        stored = await self._tailing().positions()
        behind = sum(max(0, end - stored.get(tp, 0)) for tp, end in ends.items())
        applied = 0
        while not await self._tailing().caught_up(ends):
            applied += await self._apply_next()
            if progress is not None:
                progress(applied, behind)
        return applied

    async def stop(self) -> None:
        self._ready = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_tailer()
        if self._store is not None:
            await self._thread.run(self._store.close)
            self._store = None
        self._thread.shutdown()

    async def wait_applied(self, positions: Iterable[Position], timeout: float) -> bool:
        """Wait until the view has applied these positions of `events` (read your own
        writes); False on timeout."""
        return await self._applied.wait(positions, timeout)

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn` in the store's thread (a query of the store)."""
        return await self._thread.run(fn, *args, **kwargs)

    def _store_or_fail(self) -> S:
        if self._store is None:
            raise BackendUnavailable(f"the {self.name} is not started")
        return self._store

    async def _open_tailer(self) -> None:
        """A tailer from the stored positions (the records after them are not applied)."""
        if self._tailer is not None:
            return
        positions = await self._thread.run(self._store_or_fail().positions)
        self._applied.reset(positions)
        self._tailer = self.log_.tailer([self.topics.events], positions)
        await self._tailer.start()

    async def _close_tailer(self) -> None:
        if self._tailer is not None:
            await self._tailer.close()
            self._tailer = None

    def _tailing(self) -> Tailer:
        if self._tailer is None:
            raise BackendUnavailable(f"the {self.name} is not tailing the log")
        return self._tailer

    async def _apply_next(self) -> int:
        """Apply the next records the tailer has; how many."""
        records = await self._tailing().poll(0.5, self.batch)
        if not records:
            return 0
        try:
            await self._thread.run(self._apply, self._store_or_fail(), records)
        except Exception as exc:
            await self._close_tailer()  # so that they are read again from the stored positions
            if is_full(exc):
                full = storage_full(self.path, exc)
                self._space.failed(full)
                raise full from exc
            raise
        self._space.wrote()
        await self._applied.advance(records)
        return len(records)

    async def _follow(self) -> None:
        """Apply new events as they come, waiting out failures (see the module)."""
        backoff = 0.1
        report_at = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._open_tailer()
                await self._apply_next()
                if self._lag is not None and loop.time() >= report_at:
                    report_at = loop.time() + LAG_EVERY
                    await self._report_lag(self._lag)
                backoff = 0.1
            except StorageFull:  # warned once for the episode (FullDisk)
                pass
            except BackendUnavailable as exc:
                log.warning(f"{self.name}: log unavailable", error=str(exc), retry_in=backoff)
            except Exception:
                log.exception(f"{self.name}: step failed; retrying", retry_in=backoff)
            else:
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _report_lag(self, lag: Callable[[int], None]) -> None:
        """From the tailer's positions, which on Kafka skip transaction markers."""
        ends = await self.log_.end_offsets([self.topics.events])
        mine = await self._tailing().positions()
        lag(sum(max(0, end - mine.get(tp, 0)) for tp, end in ends.items()))
