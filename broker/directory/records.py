"""The directory as records of a compacted topic: an agency as a record, a record
applied to a directory snapshot. Pure (reading and writing the topic is
broker.state.directory's).

Key = agency code; value = the agency as JSON (a tombstone removes it).
"""

from __future__ import annotations

import json
from typing import Any

import structlog

from broker.core.logrecords import NewRecord, Record
from broker.core.records import H, make_headers
from broker.directory.book import Directory
from broker.directory.model import Agency, agency_from_mapping

log = structlog.get_logger(__name__)


def agency_record(topic: str, agency: Agency, actor: str, at: int) -> NewRecord:
    """The record of `agency` as `actor` changed it at `at` (ms since the epoch)."""
    body = {**agency.to_dict(), "updated_at_ms": at, "updated_by": actor}
    return NewRecord(
        topic=topic,
        key=agency.code.encode(),
        value=json.dumps(body, ensure_ascii=False, sort_keys=True).encode(),
        headers=make_headers({H.PRODUCED_AT: at, "actor": actor}),
    )


def removal_record(topic: str, code: str, actor: str, at: int) -> NewRecord:
    """The tombstone that removes agency `code`."""
    return NewRecord(
        topic=topic,
        key=code.encode(),
        value=None,
        headers=make_headers({H.PRODUCED_AT: at, "actor": actor}),
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
