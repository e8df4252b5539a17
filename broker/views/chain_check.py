"""The audit chain's verdict on one document's events. Pure.

`docbroker audit verify` checks whole chains; an administrator looking at one
document wants to know whether *its* events are intact without reading the log.
Each event of the document names its chain, its sequence and `prev`, the SHA-256
of the chain's event before it (`events.event_bytes`). The documents view keeps
every event's stored text by (chain, seq), so the links on both sides of each of
the document's events can be checked: its `prev` against the hash of the event
before it (that event was not changed), and the `prev` of the event after it (or
the chain's recorded head) against its own hash (it was not changed itself).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from broker.core.events import GENESIS

Link = tuple[str, int]  # (chain, seq)


@dataclass(frozen=True, slots=True)
class LinkProblem:
    """One link that does not hold (`broken`), or that cannot be checked from what the
    view holds (not `broken`: e.g. the neighbour is an event without a document)."""

    chain: str
    seq: int
    broken: bool
    reason: str
    # what is wrong, as a stable code (the console words it): prev-mismatch,
    # next-mismatch, head-mismatch, before-missing, after-missing, not-chained
    code: str = ""


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    """intact: every link checked holds and none was left unchecked."""

    checked: int  # events of the document whose links were checked
    problems: tuple[LinkProblem, ...]

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def breaks(self) -> tuple[LinkProblem, ...]:
        return tuple(p for p in self.problems if p.broken)


def digest(text: str) -> str:
    """The hash the next event's `prev` holds: SHA-256 of the event as stored."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _parsed(text: str) -> tuple[str, int, str] | None:
    try:
        obj = json.loads(text)
        return str(obj["chain"]), int(obj["seq"]), str(obj["prev"])
    except (ValueError, KeyError, TypeError):
        return None


def neighbours(own: Sequence[str]) -> set[Link]:
    """The links a verdict on these events needs besides them: before and after each."""
    out: set[Link] = set()
    for text in own:
        found = _parsed(text)
        if found is not None:
            chain, seq, _ = found
            out.update({(chain, seq - 1), (chain, seq + 1)})
    return out


def verdict(
    own: Sequence[str],
    stored: Mapping[Link, str],
    heads: Mapping[str, tuple[int, str]],
) -> ChainVerdict:
    """The verdict on a document's events (their stored text), given the stored text
    of their neighbours (`stored`, by link) and each chain's recorded head (seq, hash)."""
    problems: list[LinkProblem] = []
    for text in own:
        found = _parsed(text)
        if found is None:
            problems.append(
                LinkProblem("?", 0, True, "an event that is not a chained event", "not-chained")
            )
            continue
        problems += _links_of(text, *found, stored, heads)
    return ChainVerdict(len(own), tuple(problems))


def _links_of(
    text: str,
    chain: str,
    seq: int,
    prev: str,
    stored: Mapping[Link, str],
    heads: Mapping[str, tuple[int, str]],
) -> list[LinkProblem]:
    out = []
    before = GENESIS if seq == 1 else stored.get((chain, seq - 1))
    if before is None:
        out.append(
            LinkProblem(chain, seq, False, f"event {seq - 1} is not in the view", "before-missing")
        )
    elif prev != (before if seq == 1 else digest(before)):
        out.append(
            LinkProblem(
                chain, seq, True, f"its prev is not the hash of event {seq - 1}", "prev-mismatch"
            )
        )
    mine = digest(text)
    after = stored.get((chain, seq + 1))
    head = heads.get(chain)
    if after is not None:
        after_link = _parsed(after)
        if after_link is None or after_link[2] != mine:
            out.append(
                LinkProblem(
                    chain,
                    seq,
                    True,
                    f"event {seq + 1}'s prev is not this event's hash",
                    "next-mismatch",
                )
            )
    elif head is not None and head[0] == seq and head[1] != mine:
        out.append(
            LinkProblem(
                chain, seq, True, "the chain's head is not this event's hash", "head-mismatch"
            )
        )
    elif head is not None and head[0] > seq:
        out.append(
            LinkProblem(chain, seq, False, f"event {seq + 1} is not in the view", "after-missing")
        )
    return out
