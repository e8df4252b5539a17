"""A read model kept current by tailing topics of the log: what the document, the
statistics and the mailbox views share.

`TailedView` owns the store (opened, applied and queried in its own thread), a
tailer from the positions stored with it (a restart continues; deleting the file
rebuilds it from the log), the catching up at start (with progress for a CLI;
the mailbox view serves while it catches up),
following in a task (the log going away is waited out; an apply that fails, a
full disk, restarts the tailer from the stored positions so that no event is
skipped), something done every few seconds (the lag, gauges), readiness, and
waiting for given positions (read your own writes). A subclass says how its store
is opened, which topics it tails and how records are applied.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

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


class TailedView(abc.ABC, Generic[S]):
    """Keeps a store current from topics of the log (the `events` topic unless
    `_tail_topics` says otherwise); subclasses answer queries through `_run`
    (their store's thread)."""

    name = "events view"  # for log lines, errors and the thread's name
    batch = 500  # records per poll
    catch_up_at_start = True  # ready only once caught up (else: serving while it does)
    lagging = False  # fuller, fewer fetches (up to backend.kafka.tail_fetch_wait_ms late)

    def __init__(
        self,
        log_: DurableLog,
        topics: Topics,
        path: Path,
        *,
        lag: Callable[[int], None] | None = None,
        periodic_every: float = LAG_EVERY,
    ) -> None:
        self.log_ = log_
        self.topics = topics
        self.path = path
        self._lag = lag
        self.periodic_every = periodic_every  # seconds between two `_periodic` calls
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
    def _apply(self, store: S, records: Sequence[Record]) -> Any:
        """Apply records and their positions in one transaction (the store's thread);
        what it returns goes to `_applied_records`."""

    async def _applied_records(self, records: Sequence[Record], result: Any) -> None:
        """After records are applied and their positions advanced (on the loop)."""

    def _tail_topics(self) -> list[str]:
        return [self.topics.events]

    async def _periodic(self) -> None:
        """Every `periodic_every` seconds while following: the lag, if reported."""
        if self._lag is not None:
            await self._report_lag(self._lag)

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
            if self.catch_up_at_start:
                await self.catch_up(progress)
            else:
                await self._open_tailer()
        except BaseException:
            await self.stop()
            raise
        if follow:
            self._task = asyncio.create_task(self._follow(), name=self.name)
        self._ready = True

    async def catch_up(self, progress: Progress | None = None) -> int:
        """Apply the events the log holds now; how many records were read."""
        await self._open_tailer()
        ends = await self.log_.end_offsets(self._tail_topics())
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
        self._tailer = self.log_.tailer(self._tail_topics(), positions, lagging=self.lagging)
        try:
            await self._tailer.start()
        except BaseException:
            await self._close_tailer()
            raise

    async def _close_tailer(self) -> None:
        if self._tailer is not None:
            tailer, self._tailer = self._tailer, None
            await tailer.close()

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
            result = await self._thread.run(self._apply, self._store_or_fail(), records)
        except Exception as exc:
            await self._close_tailer()  # so that they are read again from the stored positions
            if is_full(exc):
                full = storage_full(self.path, exc)
                self._space.failed(full)
                raise full from exc
            raise
        self._space.wrote()
        await self._applied.advance(records)
        await self._applied_records(records, result)
        return len(records)

    async def _follow(self) -> None:
        """Apply new events as they come, waiting out failures (see the module)."""
        backoff = 0.1
        periodic_at = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._open_tailer()
                await self._apply_next()
                if loop.time() >= periodic_at:
                    periodic_at = loop.time() + self.periodic_every
                    await self._periodic()
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
        lag(await self._behind())

    async def _behind(self) -> int:
        """Records of the tailed topics not applied yet (from the tailer's positions,
        which on Kafka skip the transaction markers: a caught-up view says 0)."""
        ends = await self.log_.end_offsets(self._tail_topics())
        mine = await self._tailing().positions()
        return sum(max(0, end - mine.get(tp, 0)) for tp, end in ends.items())
