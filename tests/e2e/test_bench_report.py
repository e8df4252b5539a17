"""The report benchmark runs (at 1 % of a province-year) and its report counts what it
generated: bench/bench_report.py exits non-zero when a figure differs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_benchmark_counts_what_it_generated() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_report.py"), "--quick"],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["counts_equal"] is True
    assert summary["events"] > 50_000  # 1 % of a province-year: ~13,700 documents
    assert "received_documents   generated     11,950  reported     11,950" in done.stdout
