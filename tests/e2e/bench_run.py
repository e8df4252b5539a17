"""Run a benchmark of bench/ in its --quick form, as CI does, and read its summary (the
last stdout line, JSON). The benchmarks judge counts themselves (a non-zero exit);
the tests check what the summary says, never the speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_quick(script: str, timeout: float) -> tuple[dict[str, Any], str]:
    """(summary, stdout) of `bench/<script> --quick`, in an environment without the
    caller's DOCBROKER_ settings; fails with the benchmark's output on a non-zero exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick"],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout
