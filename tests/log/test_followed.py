"""A followed topic's catch-up on both backends: a long history is progress, only a
stall is a failure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from broker.core.logrecords import NewRecord, Record, TopicSpec
from broker.log.interface import DurableLog
from broker.state.followed import FollowedTopic
from tests.conftest import LogFactory


@pytest.fixture
async def log(make_log: LogFactory) -> DurableLog:
    return await make_log()


@pytest.fixture
async def topic(log: DurableLog, unique_prefix: str) -> str:
    name = f"{unique_prefix}dedup"
    await log.ensure_topics([TopicSpec(name, 1, 1024 * 1024, compacted=True)])
    return name


async def test_a_catch_up_longer_than_its_timeout_goes_on_while_records_come(
    log: DurableLog, topic: str
) -> None:
    """As at start with a long history: the timeout is for a stall, not for the whole."""
    applied: list[Record] = []

    async def slow(records: Sequence[Record]) -> None:
        await asyncio.sleep(0.6)  # each batch well within the timeout, all of them not
        applied.extend(records)

    await log.append([NewRecord(topic, b"{}", key=f"k{i}".encode()) for i in range(2500)])
    follower = FollowedTopic(log, topic, slow, "test")
    follower._tailer = log.tailer([topic], {})  # start()'s first half, with a short timeout
    await follower._tailer.start()
    try:
        await follower.caught_up(timeout=1.0)
        assert len({r.key for r in applied}) == 2500
    finally:
        await follower.stop()
