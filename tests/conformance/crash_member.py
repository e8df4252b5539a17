"""A consumer-group member that dies between producing and committing.

Run by the conformance suite as a separate process: it polls the input, writes
its outputs inside the transaction, prints `produced-not-committed` from the
before-commit hook and then hangs until the test kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from broker.core.logrecords import NewRecord
from broker.log.interface import DurableLog


def hang_forever() -> None:
    print("produced-not-committed", flush=True)
    while True:
        time.sleep(3600)


def open_log(args: dict) -> DurableLog:
    if args["backend"].startswith("kafka"):  # one broker or the cluster
        from broker.config import KafkaSettings
        from broker.keys.secrets import read_secret
        from broker.log.kafka import KafkaLog

        settings = KafkaSettings(
            **{
                "bootstrap_servers": args["bootstrap"],
                "session_timeout_ms": 2000,
                **args.get("security", {}),
            }
        )
        return KafkaLog(
            settings, max_record_bytes=1024 * 1024, instance="crash-member", read_secret=read_secret
        )
    from broker.log.embedded import EmbeddedLog

    return EmbeddedLog(args["path"], session_timeout=2.0)


async def main(args: dict) -> None:
    log = open_log(args)
    await log.start()
    consumer = log.group_consumer(args["group"], [args["src"]])
    await consumer.start()
    while True:
        for tp, recs in (await consumer.poll(1.0, 100)).items():
            outputs = [NewRecord(args["dst"], r.value) for r in recs]
            await consumer.commit(tp, recs[-1].offset + 1, outputs, before_commit=hang_forever)


if __name__ == "__main__":
    # stdout carries only the marker line; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    asyncio.run(main(json.loads(sys.argv[1])))
