"""The directory as records of a compacted topic: reading, applying, writing.

Key = agency code; value = the agency as JSON (a tombstone removes it). Each
docbroker instance reads the whole topic at start (it is small) and keeps
following it (broker.state.DirectoryState), so `agencies add/update/suspend`
and credential changes reach every running instance.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from broker.directory.book import Directory
from broker.directory.model import Agency, agency_from_mapping
from broker.log.interface import DurableLog, NewRecord, Position, Record
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
        gone = directory.by_code.get(code)
        return directory.without(code).noted(code, record.timestamp_ms, gone)
    try:
        data: dict[str, Any] = json.loads(record.value)
    except ValueError:
        log.warning("directory record is not JSON", code=code, offset=record.offset)
        return directory
    at_ms = int(data.pop("updated_at_ms", None) or record.timestamp_ms)
    data.pop("updated_by", None)
    agency, problems = agency_from_mapping(data, f"directory record {code}")
    if agency is None:
        log.warning("directory record refused", code=code, problems=[str(p) for p in problems])
        return directory
    return directory.with_agency(agency).noted(code, at_ms)


async def read_directory(log_: DurableLog, topic: str) -> Directory:
    """The whole directory as the topic holds it now."""
    directory = Directory()
    ends = await log_.end_offsets([topic])
    async with log_.tailer([topic], {}) as tailer:
        while not await tailer.caught_up(ends):
            for record in await tailer.poll(0.2, 1000):
                directory = apply_record(directory, record)
    return directory


async def put_agencies(
    log_: DurableLog, topic: str, agencies: Sequence[Agency], actor: str
) -> list[Position]:
    """Write agencies (atomically); they replace any record with the same code."""
    return await log_.append([agency_record(topic, a, actor) for a in agencies])


async def change_agencies(
    log_: DurableLog,
    topic: str,
    change: Callable[[Directory], Sequence[Agency]],
    actor: str,
) -> list[Agency]:
    """Read the directory, compute changed agencies from it, write them.

    Changes from one administrator at a time are assumed (like `agencies update`):
    two concurrent changes of one agency keep the last one written."""
    changed = list(change(await read_directory(log_, topic)))
    if changed:
        await put_agencies(log_, topic, changed, actor)
    return changed
