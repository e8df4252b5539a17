"""The pipeline's worker processes under faults: a real process pool, workers that die.

A worker killed from outside (kill -9, the OOM killer) breaks the pool; the
supervisor rebuilds it, says why the pipeline cannot process meanwhile (what
/readyz reports), and processes the batches that were in it again. A record that
kills a worker each time it is processed alone is given up (the pipeline refuses
it), and the records around it are processed once each.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from broker.core.logrecords import Record
from broker.directory.book import Directory
from broker.pipeline.supervisor import SupervisedPool
from broker.pipeline.workers import ProcessingPool
from tests.conftest import eventually
from tests.e2e.faults import pipeline_workers
from tests.pipeline import poison

NOBODY = Directory.of([])


def record(offset: int, *, poisoned: bool = False) -> Record:
    headers = (("sender", b"H35"),) + ((("poison", b"1"),) if poisoned else ())
    return Record("p.inbound", 0, offset, b"H35", b"<edXML/>", headers, 0)


class Watched:
    """A supervised pool of one worker, and every `problem` it reported meanwhile."""

    def __init__(self, deaths_allowed: int) -> None:
        self.rebuilds = 0
        self.problems: list[str] = []
        self.pool = SupervisedPool(
            lambda: ProcessingPool(1, work=poison.work),
            on_rebuild=self._rebuilt,
            deaths_allowed=deaths_allowed,
            watch_interval=0.2,
        )

    def _rebuilt(self) -> None:
        self.rebuilds += 1

    async def watch(self) -> None:
        while True:
            problem = self.pool.problem
            if problem and problem not in self.problems:
                self.problems.append(problem)
            await asyncio.sleep(0.01)


@pytest.fixture
async def watched() -> AsyncIterator[Watched]:
    w = Watched(deaths_allowed=2)
    await w.pool.start()
    task = asyncio.create_task(w.watch())
    yield w
    task.cancel()
    await w.pool.stop()


class TestSupervisedPool:
    async def test_a_record_that_kills_workers_is_given_up_and_the_rest_processed_once(
        self, watched: Watched
    ) -> None:
        """The batch breaks the pool; processed again one by one, the poison kills a
        worker each time (twice allowed) and is given up; the others come back once
        each, in order, with what the batch remembered (dedup) carried along."""
        batch = [record(i, poisoned=i == 3) for i in range(6)]
        outcomes = await watched.pool.process(batch, NOBODY, {}, 0)
        assert [o is None for o in outcomes] == [i == 3 for i in range(6)]
        assert [o.dedup for o in outcomes if o is not None] == [
            (("H35", str(i)),) for i in (0, 1, 2, 4, 5)
        ]
        assert watched.rebuilds == 3  # the batch's, then one per death alone
        assert watched.problems and "worker process died" in watched.problems[0]
        assert watched.pool.problem is None
        again = await watched.pool.process([record(i) for i in range(6, 9)], NOBODY, {}, 0)
        assert all(o is not None and o.outcome == "routed" for o in again)

    async def test_a_worker_killed_from_outside_is_replaced_without_a_batch(
        self, watched: Watched
    ) -> None:
        """kill -9 of an idle worker: the watchdog notices, the pool is rebuilt (the
        problem is reported meanwhile), and the next batch goes through whole."""
        (worker,) = pipeline_workers(os.getpid())
        os.kill(worker, signal.SIGKILL)
        await eventually(lambda: watched.rebuilds and not watched.pool.problem, timeout=60)
        assert watched.rebuilds == 1
        assert watched.problems, "the rebuild was reported"
        assert watched.pool.problem is None
        outcomes = await watched.pool.process([record(i) for i in range(3)], NOBODY, {}, 0)
        assert [o.outcome for o in outcomes if o is not None] == ["routed"] * 3
        assert pipeline_workers(os.getpid()) != [worker]
