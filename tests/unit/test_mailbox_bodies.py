"""The mailbox view's memory of recent envelopes: bounded by bytes, oldest out first."""

from __future__ import annotations

from broker.core.logrecords import Position
from broker.views.mailbox_bodies import RecentBodies


def at(offset: int) -> Position:
    return Position("mailbox", 0, offset)


class TestRecentBodies:
    def test_holds_what_it_was_given_until_dropped(self) -> None:
        """A body is found at its position, and no longer once dropped."""
        bodies = RecentBodies(100)
        bodies.keep(at(1), b"one")
        assert bodies.get(at(1)) == b"one"
        assert bodies.get(at(2)) is None
        bodies.drop(at(1))
        bodies.drop(at(1))  # again: nothing to do
        assert bodies.get(at(1)) is None
        assert (len(bodies), bodies.size) == (0, 0)

    def test_the_oldest_go_first_when_over_the_bound(self) -> None:
        """Ten bytes at most: a third body of four bytes pushes the first out."""
        bodies = RecentBodies(10)
        for offset in range(3):
            bodies.keep(at(offset), b"4444")
        assert [bodies.get(at(o)) for o in range(3)] == [None, b"4444", b"4444"]
        assert bodies.size == 8

    def test_a_body_larger_than_the_bound_is_not_held(self) -> None:
        """...and does not push the others out."""
        bodies = RecentBodies(10)
        bodies.keep(at(0), b"small")
        bodies.keep(at(1), b"x" * 11)
        assert bodies.get(at(1)) is None
        assert bodies.get(at(0)) == b"small"

    def test_kept_twice_counts_once(self) -> None:
        """A record read again (a tailer restarted) replaces itself."""
        bodies = RecentBodies(10)
        bodies.keep(at(0), b"abc")
        bodies.keep(at(0), b"abc")
        assert (len(bodies), bodies.size) == (1, 3)

    def test_a_bound_of_zero_holds_nothing(self) -> None:
        bodies = RecentBodies(0)
        bodies.keep(at(0), b"a")
        assert bodies.get(at(0)) is None
