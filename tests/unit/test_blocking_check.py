"""The blocked-loop check of the suite (tests/conftest.py `no_blocking_loop`) catches
a step that blocks the loop, and lets normal steps and other loops be."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests import conftest


async def _drive(body) -> list[str]:
    """Run `body` under the check; the slow steps it found."""
    gen = conftest.no_blocking_loop.__wrapped__()
    await gen.__anext__()
    await asyncio.sleep(0)  # the next step of this task is timed
    await body()
    with pytest.raises(StopAsyncIteration):
        await gen.__anext__()
    return []


async def test_a_blocking_step_fails_the_test() -> None:
    async def blocks() -> None:
        time.sleep(0.3)  # noqa: ASYNC251 - the point of the test
        await asyncio.sleep(0)

    blocked = r"the event loop was blocked:\s+Executing <Task .* took 0\.3"
    with pytest.raises(AssertionError, match=blocked):
        await _drive(blocks)


async def test_short_steps_and_other_loops_pass() -> None:
    def other_loop() -> None:
        async def slow_there() -> None:
            time.sleep(0.3)  # noqa: ASYNC251 - on another loop: not this test's

        asyncio.run(slow_there())

    async def fine() -> None:
        for _ in range(20):
            await asyncio.sleep(0.01)
        await asyncio.to_thread(other_loop)

    assert await _drive(fine) == []
