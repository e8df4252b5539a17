"""The pipeline's commits on a full embedded log (SQLite's max_page_count standing in
for a full disk): each fails whole, the pipeline neither stops nor skips a record,
it reads its batch again and commits it once there is room; the failures are counted
(`docbroker_pipeline_commit_failures_total{reason="disk-full"}`) and warned about
once. In process."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from broker.clock import now_ms
from broker.config import load_settings
from broker.core.records import new_message_id
from broker.log.embedded import EmbeddedLog
from broker.pipeline.intake import Submission, inbound_record
from broker.runtime import Runtime
from tests.conftest import backend_env, eventually
from tests.edxml_samples import document
from tests.full_store import limit_pages
from tests.ledger import Expected, Ledger
from tests.pki import install_keys

SENDER = "000.00.00.H35"
RECIPIENTS = ("000.00.01.H35", "000.00.02.H35")
CODES = ("H35.S01", "H35.S02")
FAILED = 'docbroker_pipeline_commit_failures_total{reason="disk-full"}'


def failures(runtime: Runtime) -> float:
    for line in runtime.metrics.render().decode().splitlines():
        if line.startswith(FAILED):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.timeout(120)
async def test_commits_without_room_are_retried_and_nothing_is_lost_or_doubled(
    tmp_path: Path, unique_prefix: str
) -> None:
    install_keys(tmp_path / "data")
    env = {
        **backend_env("embedded", tmp_path / "data", unique_prefix, None),
        "DOCBROKER_PIPELINE_PROCESSES": "0",
    }
    runtime = Runtime.build(load_settings(None, env))
    log = runtime.log
    assert isinstance(log, EmbeddedLog)
    docs = [f"{SENDER},2026/11/24,{n}/FULL" for n in range(12)]
    expected = Expected("H35", dict.fromkeys(docs, CODES))
    async with contextlib.AsyncExitStack() as stack:
        *before, pipeline = runtime.lifecycle()
        for step in before:
            await stack.enter_async_context(step())
        records = []
        for doc in docs:
            data = document(SENDER, RECIPIENTS, doc, padding=8_000)
            sub = Submission(data, new_message_id(now_ms()), "t" * 32, now_ms(), "http", SENDER)
            records.append(
                inbound_record(sub, runtime.processor.validator.check(data), runtime.topics)
            )
        await log.append(records)
        await limit_pages(log, 0)
        with capture_logs() as logs:
            await stack.enter_async_context(pipeline())

            async def failed_twice() -> bool:
                return failures(runtime) >= 2

            assert await eventually(failed_twice, timeout=30, interval=0.2)
            assert runtime.pipeline.running
            nothing = await Ledger.collect(log, runtime.topics)
            assert nothing.summary()["deliveries"] == 0 == len(nothing.events)
            await limit_pages(log, None)

            async def complete() -> bool:
                ledger = await Ledger.collect(log, runtime.topics)
                return not ledger.missing(expected)

            assert await eventually(complete, timeout=60, interval=0.5)
        await asyncio.sleep(1.0)  # anything processed twice would show by now
        ledger = await Ledger.collect(log, runtime.topics)
    assert ledger.discrepancies(expected) == []
    assert [e["event"] for e in logs if e["log_level"] in ("warning", "error")] == [
        "embedded log: disk full; writes fail until space is freed"
    ]
