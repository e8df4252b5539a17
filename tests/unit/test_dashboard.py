"""The Grafana dashboard in config/grafana: importable, every PromQL expression parses
(promtool has no expression checker, so they are checked as the rules of a generated
rule file) and names only metrics docbroker exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.prometheus_tools import (
    METRIC,
    base,
    dashboard,
    exported,
    expressions,
    panels,
    promtool,
    substituted,
)


def test_the_dashboard_is_importable_with_a_prometheus_input() -> None:
    board = dashboard()
    (source,) = board["__inputs"]
    assert source["name"] == "DS_PROMETHEUS" and source["pluginId"] == "prometheus"
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        assert panel["title"] and set(panel["gridPos"]) == {"h", "w", "x", "y"}
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert panel["targets"], panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert METRIC.findall(variable["definition"]) == ["docbroker_build_info"]


def test_every_expression_parses(tmp_path: Path) -> None:
    """Each expression (variables substituted) is the rule of a generated rule file that
    promtool checks: a typo, a bad function or a bad matcher fails it."""
    found = expressions(dashboard())
    assert len(found) >= 30
    rules = [
        {"record": f"dashboard:panel_{i}", "expr": substituted(expr)}
        for i, (_, expr) in enumerate(found)
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = promtool("check", "rules", str(path))
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


def test_every_expression_names_exported_metrics() -> None:
    known = {base(n) for n in exported()}
    for title, expr in expressions(dashboard()):
        names = METRIC.findall(expr) or re.findall(r"\bup\b", expr)
        assert names, title
        for name in METRIC.findall(expr):
            assert base(name) in known, f"{title}: {name} is not exported"


def test_it_shows_what_the_operators_watch() -> None:
    """Traffic, latency, backlog per agency, refusals by code, the axis link,
    certificates, sizes and free space, readiness."""
    used = {base(n) for _, expr in expressions(dashboard()) for n in METRIC.findall(expr)}
    assert {
        "docbroker_envelopes_accepted",
        "docbroker_envelopes_refused",
        "docbroker_submit_to_mailbox_seconds",
        "docbroker_mailbox_pending_by_agency",
        "docbroker_mailbox_oldest_unacknowledged_by_agency_seconds",
        "docbroker_axis_breaker_state",
        "docbroker_axis_failures",
        "docbroker_upstream_queue_records",
        "docbroker_certificate_expiry_seconds",
        "docbroker_log_file_bytes",
        "docbroker_read_model_bytes",
        "docbroker_data_free_bytes",
        "docbroker_ready",
    } <= used
