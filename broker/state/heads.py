"""The head (sequence, hash) of every audit chain, followed from the `chains` topic."""

from __future__ import annotations

from collections.abc import Sequence

from broker.core.events import ChainHead
from broker.core.logrecords import Record
from broker.log.interface import DurableLog
from broker.state.followed import FollowedTopic


class ChainHeads:
    """The last (sequence, hash) of every audit chain."""

    def __init__(self, log_: DurableLog, topic: str) -> None:
        self.heads: dict[str, ChainHead] = {}
        self.follower = FollowedTopic(log_, topic, self._apply, "chain heads")

    def _apply(self, records: Sequence[Record]) -> None:
        for record in records:
            if record.value:
                head = ChainHead.from_json(record.value)
                current = self.heads.get(head.chain)
                if current is None or head.seq >= current.seq:
                    self.heads[head.chain] = head

    def get(self, chain: str) -> ChainHead:
        return self.heads.get(chain, ChainHead(chain))
