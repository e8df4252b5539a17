"""The pipeline's worker processes, kept working when one dies.

A worker process killed (the OOM killer, kill -9, a crash in a C library) breaks
the whole pool: every batch in it, and every later one, fails with
BrokenProcessPool. The supervisor rebuilds the pool (counted, and reported by
/readyz until the new workers are up), and processes the batches that were in
the broken pool again, one record at a time and alone in the pool, so that a
death is the record's own: a record that kills a worker each time it is
processed (`deaths_allowed` times) is given up, for the pipeline to refuse, and
its partition moves on. A watchdog pings the pool every second, so that an idle
pipeline heals too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures.process import BrokenProcessPool

import structlog

from broker.core.logrecords import Record
from broker.directory.book import Directory
from broker.pipeline.batch import Outcome, first_seen
from broker.pipeline.workers import ProcessingPool, Seen

log = structlog.get_logger(__name__)


class _Gate:
    """Batches share the pool; a record processed alone has it to itself (waiting
    batches hold back), so that the death of a worker is that record's doing."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._shared = 0
        self._exclusive = 0  # holding or waiting
        self._held = False

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._exclusive)
            self._shared += 1
        try:
            yield
        finally:
            async with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            self._exclusive += 1
            try:
                await self._cond.wait_for(lambda: not self._shared and not self._held)
            except BaseException:
                self._exclusive -= 1
                self._cond.notify_all()
                raise
            self._held = True
        try:
            yield
        finally:
            async with self._cond:
                self._held = False
                self._exclusive -= 1
                self._cond.notify_all()


class SupervisedPool:
    """A ProcessingPool rebuilt when a worker dies, isolating the record that kills."""

    def __init__(
        self,
        make: Callable[[], ProcessingPool],
        *,
        on_rebuild: Callable[[], None] = lambda: None,
        deaths_allowed: int = 3,
        watch_interval: float = 1.0,
    ) -> None:
        self._make = make
        self._on_rebuild = on_rebuild
        self.deaths_allowed = deaths_allowed
        self.watch_interval = watch_interval
        self._pool: ProcessingPool | None = None
        self._gate = _Gate()
        self._rebuilding = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False
        self.problem: str | None = None  # why no batch can be processed now (readiness)

    def _started(self) -> ProcessingPool:
        pool = self._make()
        try:
            pool.warm_up()
        except BaseException:
            pool.shutdown(wait=False)
            raise
        return pool

    async def start(self) -> None:
        self._pool = await asyncio.to_thread(self._started)
        self._watchdog = asyncio.create_task(self._watch(), name="pipeline-pool-watchdog")

    async def stop(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._pool is not None:
            await asyncio.to_thread(self._pool.shutdown)

    def _current(self) -> ProcessingPool:
        if self._pool is None:
            raise RuntimeError("the worker pool is not started")
        return self._pool

    async def process(
        self, records: Sequence[Record], directory: Directory, seen: Seen, now_ms: int
    ) -> list[Outcome | None]:
        """The batch's outcomes, in order; None for a record that killed a worker each
        of the `deaths_allowed` times it was processed alone (the caller refuses it)."""
        async with self._gate.shared():
            pool = self._current()
            try:
                return list(await pool.run(records, directory, seen, now_ms))
            except BrokenProcessPool:
                pass
        log.warning("pipeline worker process died; its batch is processed again, one by one")
        await self._rebuild(pool)
        return await self._one_by_one(records, directory, dict(seen), now_ms)

    async def _one_by_one(
        self, records: Sequence[Record], directory: Directory, seen: Seen, now_ms: int
    ) -> list[Outcome | None]:
        out: list[Outcome | None] = []
        for record in records:
            outcome = await self._alone(record, directory, seen, now_ms)
            for key in outcome.dedup if outcome is not None else ():
                seen.setdefault(key, first_seen(record, now_ms))  # as process_batch does
            out.append(outcome)
        return out

    async def _alone(
        self, record: Record, directory: Directory, seen: Seen, now_ms: int
    ) -> Outcome | None:
        for death in range(1, self.deaths_allowed + 1):
            async with self._gate.exclusive():
                pool = self._current()
                try:
                    (outcome,) = await pool.run([record], directory, seen, now_ms)
                    return outcome
                except BrokenProcessPool:
                    log.error(
                        "pipeline worker process died processing one record alone",
                        partition=str(record.tp),
                        offset=record.offset,
                        deaths=death,
                    )
                    await self._rebuild(pool)
        return None

    async def _rebuild(self, broken: ProcessingPool) -> None:
        """A new pool in place of `broken` (once, however many batches saw it break);
        until it is up, `problem` says why nothing can be processed."""
        async with self._rebuilding:
            if self._pool is not broken or self._closed:
                return
            self._on_rebuild()
            self.problem = "a pipeline worker process died; starting new ones"
            await asyncio.to_thread(broken.shutdown, False)
            backoff = 0.5
            while not self._closed:
                try:
                    self._pool = await asyncio.to_thread(self._started)
                    break
                except Exception as exc:  # e.g. no memory for a new process: try again
                    self.problem = f"the pipeline's worker processes cannot start: {exc!r}"
                    log.error("pipeline worker pool rebuild failed", error=repr(exc))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
            self.problem = None
            log.info("pipeline worker processes started again")

    async def _watch(self) -> None:
        """Ping the pool now and then, so that a death is noticed with no batch."""
        while not self._closed:
            await asyncio.sleep(self.watch_interval)
            async with self._gate.shared():
                pool = self._current()
                try:
                    await pool.ping()
                    continue
                except BrokenProcessPool:
                    pass
            log.warning("pipeline worker process died (seen by the watchdog)")
            await self._rebuild(pool)
