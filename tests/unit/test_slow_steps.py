"""The suite's blocked-loop check (tests/conftest.py): a blocking step is caught, but
a step's time in the garbage collector is not counted against it (a full collection
of the test runner's own heap failed random steps late in a CI run)."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import COLLECTOR, slow_steps


async def test_a_step_that_blocks_is_caught() -> None:
    loop = asyncio.get_running_loop()
    with slow_steps(loop) as seen:
        loop.call_soon(time.sleep, 0.3)
        await asyncio.sleep(0.05)
    assert len(seen.slow) == 1 and "took 0.3" in seen.slow[0]


async def test_time_in_the_collector_is_left_out() -> None:
    def collected_for_a_while() -> None:
        COLLECTOR("start", {"generation": 2})  # as gc.callbacks calls it
        time.sleep(0.3)
        COLLECTOR("stop", {"generation": 2})
        time.sleep(0.01)

    loop = asyncio.get_running_loop()
    with slow_steps(loop) as seen:
        loop.call_soon(collected_for_a_while)
        await asyncio.sleep(0.05)
    assert seen.slow == []
