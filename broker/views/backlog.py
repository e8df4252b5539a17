"""Mail waiting per agency: what the backlog gauges and the unfetched-mail alert show.

Pure: the store gives each recipient's unacknowledged entries, `backlog_gauges`
turns them into gauge values over a bounded label set (the directory's agencies,
everything else folded into OTHER), so that a code typed wrong by a sender or an
agency removed from the directory cannot grow the metrics without bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broker.directory.book import Directory

OTHER = "other"  # the label of recipients the directory does not name


@dataclass(frozen=True, slots=True)
class AgencyBacklog:
    """One recipient's unacknowledged mailbox entries."""

    agency: str  # the mailbox's code (the directory's code of the recipient)
    pending: int
    oldest_ms: int  # when the oldest unacknowledged entry was delivered (epoch ms)

    def age_seconds(self, now_ms: int) -> float:
        """How long the oldest entry has waited (never negative: clocks step)."""
        return max(0, now_ms - self.oldest_ms) / 1e3


@dataclass(frozen=True, slots=True)
class BacklogGauge:
    """The two gauge values of one label."""

    pending: int = 0
    oldest_seconds: float = 0.0


def backlog_gauges(
    backlog: Iterable[AgencyBacklog], directory: Directory, now_ms: int
) -> dict[str, BacklogGauge]:
    """Gauge values by agency label: every local agency of the directory (0 when
    nothing waits, so a backlog that went away reads 0, not its last value), any
    other agency of the directory that has mail waiting, and OTHER for the rest
    (always present). Codes are the directory's (a QCVN 102 code is mapped to it)."""
    gauges: dict[str, BacklogGauge] = {a.code: BacklogGauge() for a in directory if a.local}
    gauges[OTHER] = BacklogGauge()
    for entry in backlog:
        agency = directory.find(entry.agency)
        label = agency.code if agency is not None else OTHER
        seen = gauges.get(label, BacklogGauge())
        gauges[label] = BacklogGauge(
            seen.pending + entry.pending,
            max(seen.oldest_seconds, entry.age_seconds(now_ms)),
        )
    return gauges
