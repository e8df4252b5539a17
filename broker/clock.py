"""The wall clock, read by the shell only: the pure core is given the time.

(Time-ordered ids, timestamps in records and events, certificate validity, today's
date for the promulgation-date rule: the shell reads the clock once and passes it.)
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    """Milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def utc_now() -> datetime:
    return datetime.now(UTC)
