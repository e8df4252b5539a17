"""The pipeline benchmark runs in its quick form on a real Kafka and accounts for every
envelope: bench/bench_pipeline.py exits non-zero when one is not routed (a refusal,
a loss) or a delivery is not seen by the read_committed consumer. Speed is the
benchmark's to print, not this test's to judge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_benchmark_routes_and_sees_every_envelope() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_pipeline.py"), "--quick"],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["daemons"] for r in summary["runs"]] == [1, 2]
    assert all(r["routed"] == summary["envelopes"] for r in summary["runs"])
    assert all(r["ratio"] > 0 and r["cpu_ms"]["workers"] > 0 for r in summary["runs"])
    latency = summary["latency"]
    assert latency["deliveries"] + latency["warm_up"] == latency["submitted"]
    assert 0 < latency["p50_ms"] <= latency["p99_ms"]
    assert len(summary["floor_ms"]) == 2
