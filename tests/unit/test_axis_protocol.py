"""The national axis's answers, backoff and circuit breaker; the directory sync. Pure."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import ClassVar

import pytest

from adapters.national_axis.directory_sync import external_changes, pair_lists
from adapters.national_axis.protocol import (
    Answer,
    AxisError,
    BreakerState,
    CircuitBreaker,
    Failure,
    backoff_delay,
    items,
    read_answer,
)
from tests.processing_kit import directory


class TestAnswers:
    def test_ok(self) -> None:
        answer = read_answer(200, {"status": "OK", "ErrorCode": "0", "DocId": "d-1"})
        assert answer.fields["DocId"] == "d-1" and not answer.already_there

    def test_list_items_are_json_objects(self) -> None:
        """The SDK reads each item of `data` as an object; anything else is a bad answer."""
        assert items(Answer({"data": [{"docId": "a"}]}), "getReceivedEdocList") == [{"docId": "a"}]
        assert items(Answer({"status": "OK"}), "getSentEdocList") == []
        for data in ({"docId": "a"}, ["a"], "x"):
            with pytest.raises(AxisError, match="data is not a list") as caught:
                items(Answer({"data": data}), "getReceivedEdocList")
            assert caught.value.code == "bad-answer" and caught.value.unavailable

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
    """The two lists as the SDK reads them: the same agency under the same `id` in
    both (ids need not be codes), `pid` its parent's id; names may repeat."""

    AXIS_102: ClassVar[list[dict[str, str]]] = [
        {"id": "3600", "pid": "", "code": "000.00.00.H36", "name": "UBND tỉnh Lào Cai",
         "mail": "ubnd@laocai.gov.vn", "oldCode": ""},
        {"id": "3605", "pid": "3600", "code": "000.00.05.H36", "name": "Sở Tài chính",
         "mail": "", "oldCode": ""},
        {"id": "3705", "pid": "", "code": "000.00.05.H37", "name": "Sở Tài chính",
         "mail": "", "oldCode": ""},
        {"id": "3500", "pid": "", "code": "000.00.00.H35", "name": "renamed by someone",
         "mail": "", "oldCode": ""},
        {"id": "2200", "pid": "", "code": "000.00.00.G22", "name": "Bộ Nội vụ (new name)",
         "mail": "", "oldCode": ""},
        {"id": "9999", "pid": "", "code": "bad code!", "name": "x", "mail": "", "oldCode": ""},
    ]  # fmt: skip
    AXIS_QD20: ClassVar[list[dict[str, str]]] = [
        {"id": "3705", "code": "H37.S05", "code102": "000.00.05.H37", "name": "Sở Tài chính",
         "mail": ""},
        {"id": "3605", "code": "H36.S05", "code102": "000.00.05.H36", "name": "Sở Tài chính",
         "mail": ""},
        {"id": "3600", "code": "H36", "code102": "000.00.00.H36", "name": "UBND tỉnh Lào Cai",
         "mail": "ubnd@laocai.gov.vn"},
        {"id": "3500", "code": "H35", "code102": "000.00.00.H35", "name": "renamed by someone",
         "mail": ""},
        {"id": "2200", "code": "G22", "code102": "000.00.00.G22", "name": "Bộ Nội vụ (new name)",
         "mail": ""},
        {"id": "3601", "code": "H36.S01", "code102": "", "name": "Văn phòng", "mail": "",
         "pid": "3600"},
    ]  # fmt: skip

    def test_pairs_the_two_code_forms_by_id_and_parents_by_pid(self) -> None:
        paired = {a["code"]: a for a in pair_lists(self.AXIS_102, self.AXIS_QD20)}
        assert (paired["H36.S05"]["code102"], paired["H36.S05"]["parent"]) == (
            "000.00.05.H36",
            "H36",
        )
        assert paired["H37.S05"]["code102"] == "000.00.05.H37", "the same name, another agency"
        assert paired["H36"]["mail"] == "ubnd@laocai.gov.vn"
        # only in one list: the QĐ 20 one keeps its codes, the QCVN 102 one its code twice
        assert (paired["H36.S01"]["code102"], paired["H36.S01"]["parent"]) == ("", "H36")
        assert paired["bad code!"]["code102"] == "bad code!"

    def test_adds_and_updates_external_agencies_only(self) -> None:
        before = directory()
        changed = external_changes(before, pair_lists(self.AXIS_102, self.AXIS_QD20))
        by_code = {a.code: a for a in changed}
        assert "H35" not in by_code, "the province's own agencies are never touched"
        assert by_code["H36.S05"].local is False and by_code["H36.S05"].parent == "H36"
        assert by_code["G22"].name == "Bộ Nội vụ (new name)"
        assert before.find("H36") is not None and "H36" in by_code  # existing: updated
        assert by_code["H36"].email == "ubnd@laocai.gov.vn"
        assert all(a.code != "bad code!" for a in changed)
        again = before
        for a in changed:
            again = again.with_agency(a)
        assert external_changes(again, pair_lists(self.AXIS_102, self.AXIS_QD20)) == []

    def test_what_the_lists_do_not_carry_is_left_as_it_was(self) -> None:
        """The SDK's lists carry no level, telephone or address: an administrator's
        values stay."""
        before = directory()
        h36 = before.find("H36")
        assert h36 is not None
        edited = before.with_agency(replace(h36, level="tỉnh", telephone="0214 3840 888"))
        changed = external_changes(edited, pair_lists(self.AXIS_102, self.AXIS_QD20))
        (updated,) = [a for a in changed if a.code == "H36"]
        assert (updated.level, updated.telephone) == ("tỉnh", "0214 3840 888")
