"""The audit chain's verdict on one document's events (broker.views.chain_check)."""

from __future__ import annotations

import json

from broker.core.events import ChainHead, Event, EventType, link
from broker.views.chain_check import neighbours, verdict


def chain(n: int, documents: list[str]) -> list[str]:
    """n chained events of chain p0, event i about documents[i % len]."""
    events = [
        Event(EventType.ROUTED, 1000 + i, f"m{i}", documents[i % len(documents)], "A", "t")
        for i in range(n)
    ]
    records, _ = link(events, ChainHead("p0"), "events", "chains")
    return [r.value.decode() for r in records if r.topic == "events"]


def texts_by_link(texts: list[str]) -> dict[tuple[str, int], str]:
    return {(json.loads(t)["chain"], json.loads(t)["seq"]): t for t in texts}


def head_of(texts: list[str]) -> dict[str, tuple[int, str]]:
    import hashlib

    return {"p0": (len(texts), hashlib.sha256(texts[-1].encode()).hexdigest())}


class TestVerdict:
    def test_an_untouched_chain_is_intact(self) -> None:
        """Events of document D among others: every link on both sides holds."""
        texts = chain(6, ["D", "E"])
        own = [t for t in texts if json.loads(t)["document_id"] == "D"]
        result = verdict(own, texts_by_link(texts), head_of(texts))
        assert result.intact and result.checked == 3

    def test_a_changed_neighbour_breaks_the_next_link(self) -> None:
        """Event 2 (another document's) was edited: D's event 3 no longer links to it."""
        texts = chain(4, ["D", "E"])
        texts[1] = texts[1].replace('"m1"', '"mX"')
        own = [texts[0], texts[2]]
        result = verdict(own, texts_by_link(texts), head_of(texts))
        assert not result.intact
        assert [(p.seq, p.broken) for p in result.problems] == [(3, True)]
        assert "prev is not the hash of event 2" in result.problems[0].reason

    def test_a_changed_event_of_the_document_is_found_from_its_successor(self) -> None:
        texts = chain(3, ["D"])
        heads = head_of(texts)
        texts[1] = texts[1].replace('"at_ms":1001', '"at_ms":1')
        result = verdict(texts, texts_by_link(texts), heads)
        assert [p.seq for p in result.breaks] == [2, 3]
        assert "event 3's prev" in result.breaks[0].reason
        assert "prev is not the hash of event 2" in result.breaks[1].reason

    def test_the_last_event_is_checked_against_the_chains_head(self) -> None:
        texts = chain(2, ["D"])
        heads = head_of(texts)
        texts[1] = texts[1].replace('"m1"', '"mY"')
        result = verdict(texts, texts_by_link(texts), heads)
        assert [(p.seq, p.reason) for p in result.breaks] == [
            (2, "the chain's head is not this event's hash")
        ]

    def test_a_neighbour_the_view_does_not_hold_is_unverified_not_broken(self) -> None:
        texts = chain(3, ["D", "E", "D"])
        stored = texts_by_link(texts)
        del stored[("p0", 2)]
        result = verdict([texts[0], texts[2]], stored, head_of(texts))
        assert not result.intact and not result.breaks
        assert {p.reason for p in result.problems} == {
            "event 2 is not in the view",
        }

    def test_neighbours_names_the_links_on_both_sides(self) -> None:
        texts = chain(3, ["D"])
        assert neighbours([texts[1]]) == {("p0", 1), ("p0", 3)}
