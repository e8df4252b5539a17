"""The alert rules in config/prometheus name metrics docbroker exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from broker.metrics import Metrics

RULES = Path(__file__).resolve().parents[2] / "config" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\bdocbroker_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def exported() -> set[str]:
    names = set()
    for line in Metrics().render().decode().splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
    return names


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_every_rule_is_well_formed_and_names_exported_metrics() -> None:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert len(rules) >= 5
    known = {base(n) for n in exported()}
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        names = METRIC.findall(rule["expr"])
        assert names, rule["alert"]
        for name in names:
            assert base(name) in known, f"{rule['alert']}: {name} is not exported"
