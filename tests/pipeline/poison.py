"""Work for a real worker pool in the supervisor's tests: a record with the header
`poison` kills the worker process that processes it (as the OOM killer or a crash in
a C library would); any other is routed."""

from __future__ import annotations

import os
from collections.abc import Sequence

from broker.core.logrecords import Record
from broker.pipeline.batch import Outcome
from broker.pipeline.workers import Parcel


def work(
    records: Sequence[Record], parcel: Parcel, seen: dict[tuple[str, str], int], now_ms: int
) -> list[Outcome]:
    if any(r.header("poison") for r in records):
        os._exit(70)
    return [Outcome("routed", dedup=((r.header_str("sender"), str(r.offset)),)) for r in records]
