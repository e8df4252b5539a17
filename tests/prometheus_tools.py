"""Debian's promtool and prometheus for the tests of the alert rules and the dashboard.

bin/test installs them (the `prometheus` package) where it can. Missing on a
developer's machine, their tests are skipped; in CI (CI=true) they fail instead, so
that a runner without them cannot pass the suite by skipping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "config" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "tests" / "prometheus"
DASHBOARD = ROOT / "config" / "grafana" / "docbroker.json"
METRIC = re.compile(r"\bdocbroker_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def exported() -> set[str]:
    """The metric families broker.metrics.Metrics defines (without suffixes)."""
    from broker.metrics import Metrics

    names = set()
    for line in Metrics().render().decode().splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
    return names


def base(name: str) -> str:
    """A sample's family: docbroker_x_total, _bucket, _sum, _count -> docbroker_x."""
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


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


# Grafana's variables, as a query would see them (All = the regex .*)
VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$job": ".*",
    "$instance": ".*",
}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query target."""
    return [(p["title"], t["expr"]) for p in panels(board) for t in p.get("targets", [])]


def substituted(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"an unknown variable in {expr}"
    return expr
