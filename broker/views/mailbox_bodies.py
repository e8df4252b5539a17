"""The bodies of recent mailbox records, kept by the mailbox view as it tails them.

A fetch of fresh mail then needs no read of the log: reading one record by its
position is a round trip (on Kafka an offsets request and a fetch), and the reads of
an instance wait in one line. bench/bench_fetch.py measured it at 50 agencies and
100 envelopes/s: the read p50 37 ms and p99 0.66 s, and the fetches could not keep
up (16-27/s). The view tails every mailbox record anyway: keeping the bytes it
already holds costs no copy.

Bounded by bytes (oldest first out) and emptied of what is acknowledged (an
acknowledged entry is seldom fetched again, and the log still holds it, or an
archive once retention removed it: those keep their own answer, 410).
"""

from __future__ import annotations

from collections import OrderedDict

from broker.core.logrecords import Position

MiB = 2**20
DEFAULT_MAX_BYTES = 32 * MiB


class RecentBodies:
    """Record bytes by position, at most `max_bytes` of them (0: none kept)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._bodies: OrderedDict[Position, bytes] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return len(self._bodies)

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._size

    def keep(self, at: Position, body: bytes) -> None:
        """Hold `body`; the oldest go when over the bound; one larger than the bound
        is not held."""
        if len(body) > self.max_bytes:
            return
        self.drop(at)
        self._bodies[at] = body
        self._size += len(body)
        while self._size > self.max_bytes:
            _, old = self._bodies.popitem(last=False)
            self._size -= len(old)

    def get(self, at: Position) -> bytes | None:
        return self._bodies.get(at)

    def drop(self, at: Position) -> None:
        old = self._bodies.pop(at, None)
        if old is not None:
            self._size -= len(old)
