"""The alert rules in config/prometheus: well formed, naming metrics docbroker exports,
checked by promtool and unit-tested with `promtool test rules` (tests/prometheus)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.prometheus_tools import METRIC, RULE_TESTS, RULES, base, exported, promtool


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


def alerts() -> list[str]:
    return [r["alert"] for r in rules() if "alert" in r]


def rule_tests() -> list[Path]:
    return sorted(RULE_TESTS.glob("*.yml"))


def test_every_rule_is_well_formed_and_names_exported_metrics() -> None:
    assert len(alerts()) >= 14
    known = {base(n) for n in exported()}
    for rule in rules():
        name = rule.get("alert") or rule["record"]
        if "record" in rule:
            assert set(rule) <= {"record", "expr", "labels"}, rule
            assert rule["record"].startswith("docbroker:"), name
        else:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            assert METRIC.findall(rule["expr"]) or "up{" in rule["expr"], name
        for metric in METRIC.findall(rule["expr"]):
            assert base(metric) in known, f"{name}: {metric} is not exported"


def test_promtool_checks_the_rules() -> None:
    """Syntax, PromQL, templates of the annotations, duplicate names."""
    out = promtool("check", "rules", str(RULES))
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout


def test_every_alert_has_unit_tests_that_fire_it_and_that_do_not() -> None:
    """A rule test per alert, with a case where it fires and one where it must not."""
    firing: set[str] = set()
    silent: set[str] = set()
    for path in rule_tests():
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc["rule_files"] == ["../../config/prometheus/alerts.yml"], path
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    assert set(alerts()) <= firing, set(alerts()) - firing
    assert set(alerts()) <= silent, set(alerts()) - silent


def test_the_rule_unit_tests_pass() -> None:
    """promtool test rules: input series, expected alerts, labels and annotations."""
    paths = rule_tests()
    assert len(paths) >= 2
    out = promtool("test", "rules", *(p.name for p in paths), cwd=RULE_TESTS)
    assert (out.stdout + out.stderr).count("SUCCESS") == len(paths), out.stdout
