"""The audit trail's hash chains: linking, and finding the first break."""

from __future__ import annotations

import json

from broker.core.events import (
    GENESIS,
    ChainHead,
    Event,
    EventType,
    archived_counts,
    link,
    verify_chains,
)


def events(n: int, doc: str = "D,1") -> list[Event]:
    return [
        Event(EventType.ROUTED, 1000 + i, f"m-{i}", doc, "S", "t", recipient=f"R{i}")
        for i in range(n)
    ]


def chain(n: int, head: ChainHead | None = None) -> tuple[list[bytes], ChainHead]:
    records, new_head = link(events(n), head or ChainHead("inbound:0"), "ev", "chains")
    assert records[-1].topic == "chains"
    return [r.value for r in records[:-1]], new_head


class TestLink:
    def test_links_continue_from_the_head(self) -> None:
        first, head = chain(3)
        second, head2 = chain(2, head)
        seqs = [json.loads(v)["seq"] for v in first + second]
        assert seqs == [1, 2, 3, 4, 5]
        assert json.loads(first[0])["prev"] == GENESIS
        assert json.loads(second[0])["prev"] == head.hash
        assert head2.seq == 5

    def test_no_events_no_head_record(self) -> None:
        records, head = link([], ChainHead("c"), "ev", "chains")
        assert records == [] and head == ChainHead("c")


class TestVerify:
    def test_an_intact_chain(self) -> None:
        values, head = chain(5)
        counts, breaks = verify_chains(values, {head.chain: head})
        assert counts == {"inbound:0": 5} and breaks == []

    def test_a_changed_event_breaks_the_next_link(self) -> None:
        values, head = chain(5)
        changed = json.loads(values[2])
        changed["recipient"] = "someone else"
        values[2] = json.dumps(changed, sort_keys=True, separators=(",", ":")).encode()
        (b,) = verify_chains(values, {head.chain: head})[1]
        assert (b.chain, b.seq) == ("inbound:0", 4)

    def test_a_changed_last_event_breaks_the_head(self) -> None:
        values, head = chain(3)
        values[-1] = values[-1].replace(b"R2", b"R9")
        (b,) = verify_chains(values, {head.chain: head})[1]
        assert "head" in b.reason

    def test_a_removed_event_is_a_gap(self) -> None:
        values, head = chain(4)
        del values[1]
        (b,) = verify_chains(values, {head.chain: head})[1]
        assert b.seq == 2 and "missing" in b.reason

    def test_events_may_come_in_any_order(self) -> None:
        values, head = chain(4)
        assert verify_chains(list(reversed(values)), {head.chain: head})[1] == []

    def test_a_chain_whose_events_all_vanished(self) -> None:
        _, head = chain(2)
        (b,) = verify_chains([], {head.chain: head})[1]
        assert "all 2 events" in b.reason


class TestVerifyAfterPruning:
    """A log pruned by retention holds each chain's later events only."""

    def test_a_chain_is_verified_from_its_first_event_held(self) -> None:
        """The first 3 of 6 events archived: the rest verify, 3 are counted archived."""
        values, head = chain(6)
        held = values[3:]
        assert verify_chains(held, {head.chain: head}, pruned=True) == ({"inbound:0": 3}, [])
        assert archived_counts(held, {head.chain: head}) == {"inbound:0": 3}

    def test_without_pruning_a_missing_beginning_is_still_a_break(self) -> None:
        """Only a pruned log explains missing first events."""
        values, head = chain(6)
        (b,) = verify_chains(values[3:], {head.chain: head})[1]
        assert b.seq == 1 and "missing" in b.reason

    def test_a_change_after_the_first_event_held_is_still_found(self) -> None:
        """Pruning hides nothing that is still held: a changed event breaks the next link."""
        values, head = chain(6)
        held = values[2:]
        held[1] = held[1].replace(b"R3", b"R9")
        (b,) = verify_chains(held, {head.chain: head}, pruned=True)[1]
        assert b.seq == 5

    def test_a_chain_with_nothing_left_is_archived_not_broken(self) -> None:
        """All its events archived: no break, all counted."""
        _, head = chain(2)
        assert verify_chains([], {head.chain: head}, pruned=True)[1] == []
        assert archived_counts([], {head.chain: head}) == {"inbound:0": 2}
