"""The province-year benchmark runs (at 0.5 % of the year) and everything it appended
was routed exactly once: bench/bench_province.py exits non-zero when a count differs."""

from __future__ import annotations

import pytest

from tests.e2e.bench_run import run_quick

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_quick_benchmark_routes_every_envelope_once() -> None:
    summary, _ = run_quick("bench_province.py", timeout=900)
    n = summary["envelopes"]
    assert n == round(1_366_349 * 0.005)
    assert summary["sent"] == summary["routed"] == n
    assert summary["outcomes"] == {"routed": n}  # nothing refused, nothing a duplicate
    assert summary["events_routed"] == summary["messages_routed"] == n  # once each
    assert summary["complete"] is True
    for start in ("restart", "fresh"):
        assert summary[start]["ready_s"] > 0
        assert summary[start]["rss_mb"] > 0
