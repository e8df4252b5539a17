"""The province-year benchmark runs (at 0.5 % of the year) and everything it appended
was routed exactly once: bench/bench_province.py exits non-zero when a count differs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_benchmark_routes_every_envelope_once() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_province.py"), "--quick"],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    n = summary["envelopes"]
    assert n == round(1_366_349 * 0.005)
    assert summary["sent"] == summary["routed"] == n
    assert summary["outcomes"] == {"routed": n}  # nothing refused, nothing a duplicate
    assert summary["events_routed"] == summary["messages_routed"] == n  # once each
    assert summary["complete"] is True
    for start in ("restart", "fresh"):
        assert summary[start]["ready_s"] > 0
        assert summary[start]["rss_mb"] > 0
