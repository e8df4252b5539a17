"""A member that polls ahead of its commits, when its partition is read again under it.

The pipeline and the upstream sender queue up to 16 batches per partition. When
the consumer reads a partition again from its committed offset (a failed commit,
a rebalance that gives the partition back), what was queued is of an older
generation: it is dropped unprocessed, the batch in hand cannot commit, and the
records, polled again, are each committed once. Both backends.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import pytest

from broker.core.errors import Fenced
from broker.core.logrecords import NewRecord, Record, TopicPartition
from broker.pipeline.partitioned import Claim, PartitionWorkers
from tests.conformance.test_log_conformance import make_topics, tail_all
from tests.conftest import LogFactory, eventually

pytestmark = pytest.mark.usefixtures("no_blocking_loop")


class Copier(PartitionWorkers):
    """Copies each record to `out`, a commit per batch of 5; in the middle of the
    first batch of each partition the consumer reads the partition again (as the
    backend does after a failed commit or a rebalance)."""

    def __init__(self, out: str) -> None:
        super().__init__(batch_size=5, poll_timeout=0.2, queue_limit=1000)
        self.out = out
        self.rewound: set[TopicPartition] = set()
        self.handled: list[int] = []

    async def _handle_batch(self, claim: Claim, records: Sequence[Record]) -> bool:
        self.handled += [r.offset for r in records]
        if claim.tp not in self.rewound:
            self.rewound.add(claim.tp)
            await claim.consumer.rewind(claim.tp)
        try:
            await claim.commit(
                records[-1].offset + 1, [NewRecord(self.out, r.value) for r in records]
            )
        except Fenced:
            return False
        return True


async def test_records_queued_before_a_rewind_are_dropped_and_each_committed_once(
    make_log: LogFactory, unique_prefix: str
) -> None:
    """20 records polled at once, the partition read again during the first batch:
    that batch's commit is refused, the 15 queued behind it are not processed, and
    all 20, polled again, are copied once each."""
    log = await make_log()
    src, dst = await make_topics(log, unique_prefix, "in", "out", partitions=1)
    await log.append([NewRecord(src, f"r{i}".encode()) for i in range(20)])
    copier = Copier(dst)
    async with log.group_consumer(f"{unique_prefix}g", [src]) as consumer:
        task = asyncio.create_task(copier._run(consumer))
        await eventually(lambda: len(set(copier.handled)) == 20, timeout=30)
        await asyncio.sleep(1.0)  # anything processed twice would show by now
        copier._stopping.set()
        await task
    out = await tail_all(log, dst, 20)
    assert sorted(r.value for r in out) == sorted(f"r{i}".encode() for i in range(20))
    # The first batch twice (its commit was refused), every other record once.
    counts = Counter(copier.handled)
    twice = sorted(offset for offset, n in counts.items() if n == 2)
    assert set(counts) == set(range(20)) and set(counts.values()) <= {1, 2}
    assert twice == list(range(len(twice))) and 1 <= len(twice) <= 5
    assert copier.queued == 0
