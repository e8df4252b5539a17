"""The fetch benchmark runs (--quick: 50 agencies, 10 s) and every envelope it
submitted was fetched exactly once, intact, and acknowledged; its speed is not checked
(bench/bench_fetch.py prints it beside the floor)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_the_quick_fetch_benchmark_fetches_each_envelope_once() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_fetch.py"), "--quick"],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["counts_ok"] is True
    assert summary["agencies"] == 50
    assert summary["submitted"] == summary["expected"] == 200 + 1000
    assert summary["fetched_once"] == summary["submitted"]
    assert summary["missing"] == summary["duplicates"] == summary["unexpected"] == 0
    assert summary["damaged"] == summary["left_pending"] == summary["refused"] == 0
    assert summary["measured"] == 1000
    assert "fetch p99 / floor p99" in done.stdout
