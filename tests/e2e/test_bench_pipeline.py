"""The pipeline benchmark runs in its quick form on a real Kafka and accounts for every
envelope: bench/bench_pipeline.py exits non-zero when one is not routed (a refusal,
a loss) or a delivery is not seen by the read_committed consumer. Speed is the
benchmark's to print, not this test's to judge."""

from __future__ import annotations

import pytest

from tests.e2e.bench_run import run_quick

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_quick_benchmark_routes_and_sees_every_envelope() -> None:
    summary, _ = run_quick("bench_pipeline.py", timeout=900)
    assert [r["daemons"] for r in summary["runs"]] == [1, 2]
    assert all(r["routed"] == summary["envelopes"] for r in summary["runs"])
    assert all(r["ratio"] > 0 and r["cpu_ms"]["workers"] > 0 for r in summary["runs"])
    latency = summary["latency"]
    assert latency["deliveries"] + latency["warm_up"] == latency["submitted"]
    assert 0 < latency["p50_ms"] <= latency["p99_ms"]
    assert len(summary["floor_ms"]) == 2
