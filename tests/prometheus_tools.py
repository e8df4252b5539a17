"""Debian's promtool and prometheus for the tests of the alert rules and the dashboard.

bin/test installs them (the `prometheus` package) where it can. Missing on a
developer's machine, their tests are skipped; in CI (CI=true) they fail instead, so
that a runner without them cannot pass the suite by skipping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "config" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "tests" / "prometheus"
DASHBOARD = ROOT / "config" / "grafana" / "docbroker.json"


def tool(name: str) -> str:
    """The executable's path; fails in CI, skips elsewhere, when it is missing."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (Debian: apt-get install prometheus; bin/test does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """promtool with these arguments; its output is in the assertion message on failure."""
    done = subprocess.run(
        [tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done
