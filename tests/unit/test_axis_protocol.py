"""The national axis's answers, backoff and circuit breaker; the directory sync. Pure."""

from __future__ import annotations

import random
from typing import ClassVar

import pytest

from adapters.national_axis.directory_sync import external_changes, pair_lists
from adapters.national_axis.protocol import (
    AxisError,
    BreakerState,
    CircuitBreaker,
    Failure,
    backoff_delay,
    read_answer,
)
from tests.processing_kit import directory


class TestAnswers:
    def test_ok(self) -> None:
        answer = read_answer(200, {"status": "OK", "ErrorCode": "0", "docId": "d-1"})
        assert answer.fields["docId"] == "d-1" and not answer.already_there

    def test_already_there_counts_as_delivered(self) -> None:
        answer = read_answer(200, {"status": "FAIL", "ErrorCode": "ExistDoc", "ErrorDesc": "x"})
        assert answer.already_there

    @pytest.mark.parametrize(
        ("status", "body", "failure", "code"),
        [
            (
                200,
                {"status": "FAIL", "ErrorCode": "AgencyNotFound"},
                Failure.REFUSED,
                "AgencyNotFound",
            ),
            (400, {"status": "FAIL", "ErrorCode": "InvalidHash"}, Failure.REFUSED, "InvalidHash"),
            (
                500,
                {"status": "FAIL", "ErrorCode": "ServerError"},
                Failure.UNAVAILABLE,
                "ServerError",
            ),
            (502, None, Failure.UNAVAILABLE, "http-502"),
            (
                401,
                {"status": "FAIL", "ErrorCode": "Unauthorized"},
                Failure.UNAVAILABLE,
                "Unauthorized",
            ),
            (429, {}, Failure.UNAVAILABLE, "http-429"),
            (200, "not json", Failure.UNAVAILABLE, "bad-answer"),
        ],
    )
    def test_failures_say_whether_to_spend_the_budget(self, status, body, failure, code) -> None:
        with pytest.raises(AxisError) as caught:
            read_answer(status, body)
        assert caught.value.failure is failure and caught.value.code == code


def test_backoff_grows_to_its_cap_with_jitter_in_the_upper_half() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, 1.0, 60.0, rng) for n in range(1, 10)]
    for n, d in enumerate(delays, start=1):
        ceiling = min(60.0, 2 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling
    assert max(delays) <= 60.0


class TestBreaker:
    def test_opens_after_consecutive_failures_then_lets_one_trial_through(self) -> None:
        b = CircuitBreaker(failures=3, reset=30)
        for t in range(3):
            assert b.allow(t)
            b.failed(t)
        assert b.state is BreakerState.OPEN and not b.allow(10)
        assert b.retry_in(10) == pytest.approx(22)
        assert b.allow(32) and b.state is BreakerState.HALF_OPEN
        assert not b.allow(32.1), "one trial at a time"
        b.failed(33)
        assert b.state is BreakerState.OPEN and not b.allow(40)
        assert b.allow(63)
        b.succeeded()
        assert b.state is BreakerState.CLOSED and b.allow(64)

    def test_a_success_resets_the_count(self) -> None:
        b = CircuitBreaker(failures=2, reset=1)
        b.failed(0)
        b.succeeded()
        b.failed(1)
        assert b.state is BreakerState.CLOSED


class TestDirectorySync:
    AXIS_102: ClassVar[list[dict[str, str]]] = [
        {"code": "000.00.00.H36", "name": "UBND tỉnh Lào Cai", "pid": ""},
        {"code": "000.00.05.H36", "name": "Sở Tài chính", "pid": "000.00.00.H36"},
        {"code": "000.00.00.H35", "name": "renamed by someone", "pid": ""},
        {"code": "000.00.00.G22", "name": "Bộ Nội vụ (new name)", "pid": ""},
        {"code": "bad code!", "name": "x", "pid": ""},
    ]
    AXIS_QD20: ClassVar[list[dict[str, str]]] = [
        {"code": "H36", "name": "UBND tỉnh Lào Cai", "pid": ""},
        {"code": "H36.S05", "name": "Sở Tài chính", "pid": "H36"},
        {"code": "H35", "name": "renamed by someone", "pid": ""},
        {"code": "G22", "name": "Bộ Nội vụ (new name)", "pid": ""},
    ]

    def test_pairs_the_two_code_forms_and_parents(self) -> None:
        paired = pair_lists(self.AXIS_102, self.AXIS_QD20)
        s05 = next(a for a in paired if a["code102"] == "000.00.05.H36")
        assert (s05["code"], s05["parent"]) == ("H36.S05", "H36")

    def test_adds_and_updates_external_agencies_only(self) -> None:
        before = directory()
        changed = external_changes(before, pair_lists(self.AXIS_102, self.AXIS_QD20))
        by_code = {a.code: a for a in changed}
        assert "H35" not in by_code, "the province's own agencies are never touched"
        assert by_code["H36.S05"].local is False and by_code["H36.S05"].parent == "H36"
        assert by_code["G22"].name == "Bộ Nội vụ (new name)"
        assert before.find("H36") is not None and "H36" in by_code  # existing: updated
        assert all(a.code != "bad code!" for a in changed)
        again = before
        for a in changed:
            again = again.with_agency(a)
        assert external_changes(again, pair_lists(self.AXIS_102, self.AXIS_QD20)) == []
