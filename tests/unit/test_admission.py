"""The fair-share accounting (adapters.http_api.admission): per-agency request and
long-poll caps, and the server's byte budget, as plain counters."""

from __future__ import annotations

from adapters.http_api.admission import Admission, ByteBudget, Limit, Refused, Reservation, Slot

A, B = "000.00.00.H35", "000.00.01.H35"


def test_an_agency_gets_its_cap_of_requests_and_no_more() -> None:
    admission = Admission.of(3, 1, 100)
    slots = [admission.request(A) for _ in range(3)]
    assert all(isinstance(s, Slot) for s in slots)
    refused = admission.request(A)
    assert isinstance(refused, Refused) and refused.limit is Limit.AGENCY_REQUESTS
    assert "http.agency_max_requests" in refused.detail and A in refused.detail
    assert isinstance(admission.request(B), Slot)  # another agency has its own cap
    assert B not in refused.detail


def test_a_released_slot_is_free_again_and_a_second_release_changes_nothing() -> None:
    admission = Admission.of(2, 1, 100)
    first, second = admission.request(A), admission.request(A)
    assert isinstance(first, Slot) and isinstance(second, Slot)
    first.release()
    first.release()  # every exit path may release: only the first counts
    assert admission.requests == {A: 1}
    assert isinstance(admission.request(A), Slot)
    assert isinstance(admission.request(A), Refused)


def test_an_idle_agency_leaves_no_entry() -> None:
    admission = Admission.of(2, 2, 100)
    for _ in range(3):
        slot, poll = admission.request(A), admission.long_poll(A)
        assert isinstance(slot, Slot) and isinstance(poll, Slot)
        poll.release()
        slot.release()
    assert admission.requests == {} and admission.long_polls == {}


def test_long_polls_have_their_own_cap() -> None:
    admission = Admission.of(10, 2, 100)
    polls = [admission.long_poll(A), admission.long_poll(A)]
    refused = admission.long_poll(A)
    assert isinstance(refused, Refused) and refused.limit is Limit.AGENCY_LONG_POLLS
    assert "http.agency_max_long_polls" in refused.detail
    assert isinstance(admission.long_poll(B), Slot)
    polls[0].release()  # type: ignore[union-attr]
    assert isinstance(admission.long_poll(A), Slot)


def test_the_byte_budget_takes_what_fits_and_gives_it_back() -> None:
    budget = ByteBudget(100)
    first = budget.reserve(60)
    assert isinstance(first, Reservation) and budget.in_flight == 60
    refused = budget.reserve(41)
    assert isinstance(refused, Refused) and refused.limit is Limit.BYTES_IN_FLIGHT
    assert "http.max_bytes_in_flight" in refused.detail and budget.in_flight == 60
    assert budget.refused == 1
    second = budget.reserve(40)
    assert isinstance(second, Reservation) and budget.in_flight == 100
    first.release()
    first.release()
    assert budget.in_flight == 40
    second.release()
    assert budget.in_flight == 0


def test_a_body_of_unknown_length_grows_its_reservation_until_it_does_not_fit() -> None:
    budget = ByteBudget(100)
    held = budget.reserve(30)
    growing = budget.reserve(0)
    assert isinstance(held, Reservation) and isinstance(growing, Reservation)
    assert growing.grow(50) is None and growing.size == 50 and budget.in_flight == 80
    refused = growing.grow(21)  # nothing of a chunk that does not fit is counted
    assert isinstance(refused, Refused) and growing.size == 50 and budget.in_flight == 80
    growing.release()
    assert budget.in_flight == 30
    held.release()
    assert budget.in_flight == 0


def test_a_body_as_large_as_the_budget_fits_when_nothing_else_is_in_flight() -> None:
    budget = ByteBudget(100)
    whole = budget.reserve(100)
    assert isinstance(whole, Reservation)
    assert isinstance(budget.reserve(1), Refused)
    assert isinstance(budget.reserve(0), Reservation)  # a request without a body always fits
