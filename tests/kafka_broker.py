"""The real Apache Kafka broker the suite runs against, started by bin/kafka-local.

Set DOCBROKER_TEST_KAFKA_BOOTSTRAP=host:port to use a broker that is already
running (a developer's `bin/kafka-local start`) instead of starting one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KAFKA_LOCAL = ROOT / "bin" / "kafka-local"


@dataclass(frozen=True)
class KafkaBroker:
    bootstrap: str
    ready_seconds: float | None
    data_dir: Path | None


def start_broker(data_dir: Path) -> KafkaBroker:
    external = os.environ.get("DOCBROKER_TEST_KAFKA_BOOTSTRAP")
    if external:
        return KafkaBroker(external, None, None)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(KAFKA_LOCAL), "start", "--dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bin/kafka-local start failed:\n{proc.stdout}\n{proc.stderr}")
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    elapsed = time.monotonic() - started
    print(
        f"\nkafka: {state['version']} at {state['bootstrap']}, ready in "
        f"{state.get('ready_seconds')} s after launch ({elapsed:.1f} s with fetch and format)",
        file=sys.stderr,
    )
    return KafkaBroker(state["bootstrap"], state.get("ready_seconds"), data_dir)


def stop_broker(broker: KafkaBroker) -> None:
    if broker.data_dir is not None:
        subprocess.run(
            [sys.executable, str(KAFKA_LOCAL), "stop", "--dir", str(broker.data_dir)],
            capture_output=True,
            timeout=120,
        )
