"""A batch whose outputs the log refuses as too large, when the processor let them
through (a broker whose limit is below the configured one): the batch is committed
record by record, from the outcomes already computed (nothing processed twice,
nothing read again), and the record that is too large is refused once, with its 02.
In process, on both backends."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path

from broker.clock import now_ms
from broker.config import load_settings
from broker.core.records import new_message_id
from broker.pipeline.intake import Submission, inbound_record
from broker.runtime import Runtime
from tests.conftest import backend_env, eventually
from tests.e2e.test_fault_too_large import CODES, ENVELOPE_LIMIT, SENDER, oversized
from tests.edxml_samples import document
from tests.ledger import Expected, Ledger
from tests.pki import install_keys


async def test_the_batch_is_committed_record_by_record_and_the_large_one_refused_once(
    backend: str, tmp_path: Path, unique_prefix: str, kafka_bootstrap: str | None
) -> None:
    install_keys(tmp_path / "data")
    env = {
        **backend_env(backend, tmp_path / "data", unique_prefix, kafka_bootstrap),
        "DOCBROKER_LIMITS_MAX_ENVELOPE_BYTES": str(ENVELOPE_LIMIT),
        "DOCBROKER_PIPELINE_PROCESSES": "0",
    }
    runtime = Runtime.build(load_settings(None, env))
    # The log alone judges the size: the processor's own check is off.
    runtime.pipeline.processor = replace(runtime.processor, max_record_bytes=None)
    docs = {f"{SENDER},2026/11/24,{n}/FALLBACK": n == 5 for n in range(11)}
    expected = Expected(
        "H35",
        dict.fromkeys(docs, CODES),
        refused={d: ("too-large",) for d, big in docs.items() if big},
    )
    async with contextlib.AsyncExitStack() as stack:
        *before, pipeline = runtime.lifecycle()
        for step in before:
            await stack.enter_async_context(step())
        records = []
        for doc, big in docs.items():  # all in inbound before the pipeline starts: one batch
            data = (
                oversized(doc) if big else document(SENDER, ("000.00.01.H35", "000.00.02.H35"), doc)
            )
            sub = Submission(data, new_message_id(now_ms()), "t" * 32, now_ms(), "http", SENDER)
            records.append(
                inbound_record(sub, runtime.processor.validator.check(data), runtime.topics)
            )
        await runtime.log.append(records)
        await stack.enter_async_context(pipeline())
        ledger = await Ledger.collect(runtime.log, runtime.topics)

        async def complete() -> bool:
            nonlocal ledger
            ledger = await Ledger.collect(runtime.log, runtime.topics)
            return not ledger.missing(expected)

        assert await eventually(complete, timeout=60, interval=0.5)
        await asyncio.sleep(1.0)  # anything processed twice would show by now
        ledger = await Ledger.collect(runtime.log, runtime.topics)
        records_metric = runtime.metrics.render().decode()
    assert ledger.discrepancies(expected) == []
    assert 'docbroker_pipeline_commit_failures_total{reason="too-large"} 1.0' in records_metric
