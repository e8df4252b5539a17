"""The directory as records of a compacted topic, and the live view every instance keeps.

Key = agency code; value = the agency as JSON (a tombstone removes it). Each
docbroker instance reads the whole topic at start (it is small) and keeps
following it, so `agencies add/update/suspend` reach every running instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

import structlog

from broker.directory.book import Directory
from broker.directory.model import Agency, agency_from_mapping
from broker.errors import BackendUnavailable
from broker.log.interface import DurableLog, NewRecord, Position, Record, Tailer
from broker.records import H, make_headers, now_ms

log = structlog.get_logger(__name__)


def agency_record(topic: str, agency: Agency, actor: str) -> NewRecord:
    at = now_ms()
    body = {**agency.to_dict(), "updated_at_ms": at, "updated_by": actor}
    return NewRecord(
        topic=topic,
        key=agency.code.encode(),
        value=json.dumps(body, ensure_ascii=False, sort_keys=True).encode(),
        headers=make_headers({H.PRODUCED_AT: at, "actor": actor}),
    )


def removal_record(topic: str, code: str, actor: str) -> NewRecord:
    return NewRecord(
        topic=topic,
        key=code.encode(),
        value=None,
        headers=make_headers({H.PRODUCED_AT: now_ms(), "actor": actor}),
    )


def apply_record(directory: Directory, record: Record) -> Directory:
    code = (record.key or b"").decode()
    if not record.value:
        return directory.without(code)
    try:
        data: dict[str, Any] = json.loads(record.value)
    except ValueError:
        log.warning("directory record is not JSON", code=code, offset=record.offset)
        return directory
    data.pop("updated_at_ms", None)
    data.pop("updated_by", None)
    agency, problems = agency_from_mapping(data, f"directory record {code}")
    if agency is None:
        log.warning("directory record refused", code=code, problems=[str(p) for p in problems])
        return directory
    return directory.with_agency(agency)


async def read_directory(log_: DurableLog, topic: str) -> Directory:
    """The whole directory as the topic holds it now."""
    directory = Directory()
    ends = await log_.end_offsets([topic])
    async with log_.tailer([topic], {}) as tailer:
        while not await tailer.caught_up(ends):
            for record in await tailer.poll(0.2, 1000):
                directory = apply_record(directory, record)
    return directory


class DirectoryView:
    """Follows the directory topic; `current` is the latest snapshot (immutable)."""

    def __init__(self, log_: DurableLog, topic: str) -> None:
        self.log_ = log_
        self.topic = topic
        self.current = Directory()
        self.loaded = False
        self._task: asyncio.Task[None] | None = None
        self._tailer: Tailer | None = None

    async def start(self) -> None:
        ends = await self.log_.end_offsets([self.topic])
        self._tailer = self.log_.tailer([self.topic], {})
        await self._tailer.start()
        while not await self._tailer.caught_up(ends):
            self._apply(await self._tailer.poll(0.2, 1000))
        self.loaded = True
        log.info("directory loaded", agencies=len(self.current))
        self._task = asyncio.create_task(self._follow(), name="directory-view")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._tailer is not None:
            await self._tailer.close()

    def _apply(self, records: Sequence[Record]) -> None:
        directory = self.current
        for record in records:
            directory = apply_record(directory, record)
        self.current = directory

    async def _follow(self) -> None:
        assert self._tailer is not None
        while True:
            try:
                records = await self._tailer.poll(1.0, 1000)
                if records:
                    self._apply(records)
                    log.info("directory updated", changes=len(records), agencies=len(self.current))
            except BackendUnavailable as exc:
                log.warning("directory view: log unavailable", error=str(exc))
                await asyncio.sleep(1.0)


async def put_agencies(
    log_: DurableLog, topic: str, agencies: Sequence[Agency], actor: str
) -> list[Position]:
    """Write agencies (atomically); they replace any record with the same code."""
    return await log_.append([agency_record(topic, a, actor) for a in agencies])
