"""The dead letters the console shows, read again only when the topic has grown."""

from __future__ import annotations

import asyncio

from broker.core.logrecords import TopicPartition
from broker.core.topics import Topics
from broker.log.interface import DurableLog
from broker.views.audit import read_all
from broker.views.dead_letters import DeadLetter, dead_letters


class DeadLetterCache:
    """Every dead letter of the `rejected` topic (without its bytes, marked replayed where
    the pipeline replayed it), parsed once per change of the topic's end offsets: a page
    view costs one offsets query."""

    def __init__(self) -> None:
        self._ends: dict[TopicPartition, int] | None = None
        self._letters: list[DeadLetter] = []
        self._lock = asyncio.Lock()

    async def letters(self, log_: DurableLog, topics: Topics) -> list[DeadLetter]:
        async with self._lock:
            ends = await log_.end_offsets([topics.rejected])
            if ends != self._ends:
                records = await read_all(log_, topics.rejected)
                self._letters = [letter for letter, _ in dead_letters(records)]
                self._ends = ends
            return self._letters

    async def find(self, log_: DurableLog, topics: Topics, message_id: str) -> DeadLetter | None:
        """The latest dead letter of this message id."""
        found = [d for d in await self.letters(log_, topics) if d.message_id == message_id]
        return found[-1] if found else None
