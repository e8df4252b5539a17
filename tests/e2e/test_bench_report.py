"""The report benchmark runs (at 1 % of a province-year) and its report counts what it
generated: bench/bench_report.py exits non-zero when a figure differs."""

from __future__ import annotations

import pytest

from tests.e2e.bench_run import run_quick

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_quick_benchmark_counts_what_it_generated() -> None:
    summary, stdout = run_quick("bench_report.py", timeout=600)
    assert summary["counts_equal"] is True
    assert summary["events"] > 50_000  # 1 % of a province-year: ~13,700 documents
    assert "received_documents   generated     11,950  reported     11,950" in stdout
