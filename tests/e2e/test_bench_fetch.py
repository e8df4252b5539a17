"""The fetch benchmark runs (--quick: 50 agencies, 10 s) and every envelope it
submitted was fetched exactly once, intact, and acknowledged; its speed is not checked
(bench/bench_fetch.py prints it beside the floor)."""

from __future__ import annotations

import pytest

from tests.e2e.bench_run import run_quick

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_the_quick_fetch_benchmark_fetches_each_envelope_once() -> None:
    summary, stdout = run_quick("bench_fetch.py", timeout=800)
    assert summary["counts_ok"] is True
    assert summary["agencies"] == 50
    assert summary["submitted"] == summary["expected"] == 200 + 1000
    assert summary["fetched_once"] == summary["submitted"]
    assert summary["missing"] == summary["duplicates"] == summary["unexpected"] == 0
    assert summary["damaged"] == summary["left_pending"] == summary["refused"] == 0
    assert summary["measured"] == 1000
    assert "fetch p99 / floor p99" in stdout
