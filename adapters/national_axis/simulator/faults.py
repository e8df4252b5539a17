"""Fault injection: what goes wrong at the simulator, on purpose, set by a test through
`/_sim/faults`. Pure: the HTTP layer applies them."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.vdxp import OPERATIONS


@dataclass(frozen=True, slots=True)
class Faults:
    """What goes wrong, on purpose. `phase` "after" carries the operation out (and
    commits it) before delaying, dropping or failing the answer: a lost answer."""

    fail_rate: float = 0.0
    fail_status: int = 500
    fail_code: str = "ServerError"
    delay_seconds: float = 0.0
    drop_rate: float = 0.0
    operations: frozenset[str] = frozenset()  # empty: all
    phase: str = "before"  # before | after

    def applies_to(self, operation: str) -> bool:
        return not self.operations or operation in self.operations

    def to_json(self) -> dict[str, Any]:
        return {
            "fail_rate": self.fail_rate,
            "fail_status": self.fail_status,
            "fail_code": self.fail_code,
            "delay_seconds": self.delay_seconds,
            "drop_rate": self.drop_rate,
            "operations": sorted(self.operations),
            "phase": self.phase,
        }


def faults_from_json(data: object) -> Faults:
    """Fault settings from a /_sim/faults body; ValueError says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    unknown = sorted(set(data) - set(Faults.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}")
    out = Faults()
    values: dict[str, Any] = {}
    for key in ("fail_rate", "drop_rate"):
        values[key] = _number(data, key, getattr(out, key), 0.0, 1.0)
    values["delay_seconds"] = _number(data, "delay_seconds", 0.0, 0.0, 600.0)
    status = data.get("fail_status", out.fail_status)
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise ValueError("fail_status must be an HTTP status from 200 to 599")
    code = data.get("fail_code", out.fail_code)
    if not isinstance(code, str) or not code:
        raise ValueError("fail_code must be a non-empty string")
    ops = data.get("operations") or []
    if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
        raise ValueError("operations must be a list of operation names")
    strange = sorted(set(ops) - set(OPERATIONS))
    if strange:
        raise ValueError(f"unknown operation(s) {', '.join(strange)}")
    phase = data.get("phase", "before")
    if phase not in ("before", "after"):
        raise ValueError("phase must be before or after")
    return Faults(
        fail_status=status, fail_code=code, operations=frozenset(ops), phase=phase, **values
    )


def _number(data: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = data.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{key} must be a number from {low} to {high}")
    return float(value)


def chance(rng: random.Random, rate: float) -> bool:
    """A draw that comes true with probability `rate` (always at 1, never at 0)."""
    return rate >= 1.0 or (rate > 0.0 and rng.random() < rate)
