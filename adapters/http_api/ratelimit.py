"""Per-caller request rate limits: a token bucket per key, with an injected clock.

Each key (an agency code, or "admin") may make `burst` requests at once and
`rate` per second on average. `take` answers how long to wait when refused:
the Retry-After of a 429. Buckets of keys not seen for a while are forgotten.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    rate: float  # tokens per second; 0 = unlimited
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._forget_idle(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        """A bucket refilled to the brim carries no state: drop it (bounded memory)."""
        if len(self._buckets) < 10_000:
            return
        full_after = self.burst / self.rate
        for key, (_, at) in list(self._buckets.items()):
            if now - at > full_after:
                del self._buckets[key]
