"""The memory benchmark runs (--quick: the 20 MiB envelope, a 1-minute soak): the large
envelope is fetched intact and every soak envelope exactly once; the figures themselves
(growth against the size, RSS flatness) are printed, not checked."""

from __future__ import annotations

import pytest

from tests.e2e.bench_run import run_quick

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_the_quick_memory_benchmark_counts_what_it_sent() -> None:
    summary, _ = run_quick("bench_memory.py", timeout=800)
    assert summary["counts_ok"] is True
    large, soak = summary["large"], summary["soak"]
    assert large["intact"] is True
    assert large["size"] >= 20 * 2**20
    assert large["fetched_size"] >= large["size"]  # stamped and signed by the broker
    assert {p["name"] for p in large["processes"]} >= {"daemon", "worker"}
    assert soak["submitted"] > 0 and soak["fetched_once"] == soak["submitted"]
    assert soak["missing"] == soak["duplicates"] == soak["unexpected"] == 0
    assert soak["left_pending"] == soak["refused"] == 0
    assert soak["samples"] >= 10
