"""The signatures benchmark runs (--quick) and verifies what it times: each sender's
signature comes out valid, bound and acted on, beside a floor measured in the run."""

from __future__ import annotations

import pytest

from tests.e2e.bench_run import run_quick

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_quick_benchmark_verifies_each_sender_signature() -> None:
    summary, _ = run_quick("bench_signatures.py", timeout=300)
    assert summary["quick"] is True
    assert set(summary["cases"]) == {"10 KB", "370 KB"}
    for case in summary["cases"].values():
        assert case["outcome"] == "valid" and case["problems"] == []
        assert case["signed_part"] is True
        assert case["check_sender_ms"] > 0 and case["floor_ms"] > 0
        assert case["ratio"] == pytest.approx(case["check_sender_ms"] / case["floor_ms"], rel=0.05)
