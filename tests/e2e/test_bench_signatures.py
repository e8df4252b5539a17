"""The signatures benchmark runs (--quick) and verifies what it times: each sender's
signature comes out valid, bound and acted on, beside a floor measured in the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_benchmark_verifies_each_sender_signature() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_signatures.py"), "--quick"],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["quick"] is True
    assert set(summary["cases"]) == {"10 KB", "370 KB"}
    for case in summary["cases"].values():
        assert case["outcome"] == "valid" and case["problems"] == []
        assert case["signed_part"] is True
        assert case["check_sender_ms"] > 0 and case["floor_ms"] > 0
        assert case["ratio"] == pytest.approx(case["check_sender_ms"] / case["floor_ms"], rel=0.05)
