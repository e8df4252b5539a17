"""A signed archive: what may leave the log, in hash-chained ZIP files. Pure.

`docbroker archive export --until DATE DIR` writes, per period (a calendar month,
UTC), one ZIP file `docbroker-YYYY-MM.zip` (`docbroker-YYYY-MM.2.zip`, … for a later
export of the same month) holding, per partition of the archived topics (mailbox,
receipts, events), a contiguous range of records [from, to):

- `mailbox/0/000000000123.rec`, …: each record's value bytes, as the log holds them;
- `index.json`: each entry's topic, partition, offset, timestamp, key and headers;
- `manifest.json`: the SHA-256 and size of every entry (index included), the
  period, the partitions and their offset ranges, the previous archive's file name
  and manifest SHA-256 (the hash chain across files), the broker's certificate;
- `manifest.sig`: the broker's signature over the bytes of manifest.json.

Which records: per partition, the contiguous prefix (from where the previous
archive ended) of records stamped before DATE and, for the mailbox, acknowledged by
their recipient before DATE; `to` is the first offset not archived. The bytes are
deterministic (fixed ZIP times, fixed order, deterministic signatures), so an export
run again over the same log writes the same files.

This module selects the records, cuts them into periods and builds the files'
bytes; broker.core.archive_check verifies them; the shell reads the log and writes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker.core.backup import safe_path
from broker.core.logrecords import Record, TopicPartition
from broker.core.receipts import ReceiptKind
from broker.core.records import H

FORMAT = 1
KIND = "docbroker-archive"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
INDEX = "index.json"
PREFIX = "docbroker-"
ROLES = ("mailbox", "receipts", "events")  # the archived topics, in entry order
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # every entry's time: the same bytes each export
ZIP_ATTRIBUTES = (0o644 << 16, 3)  # every entry's external attributes and system (Unix)
DAMAGED = "archive-damaged"

Acked = frozenset[tuple[str, str]]  # (recipient, message id) acknowledged


@dataclass(frozen=True, slots=True, order=True)
class Range:
    """Records [start, end) of one partition of a topic (by role) in one archive."""

    role: str
    partition: int
    start: int
    end: int
    records: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.role,
            "partition": self.partition,
            "from": self.start,
            "to": self.end,
            "records": self.records,
        }


@dataclass(frozen=True, slots=True)
class Previous:
    file: str
    manifest_sha256: str


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class ArchiveManifest:
    """What one archive file holds (manifest.json)."""

    file: str
    seq: int  # 1 for the first archive of a folder, then one more each
    period: str  # YYYY-MM
    until: str  # ISO-8601 UTC: the export's --until
    topic_prefix: str
    ranges: tuple[Range, ...]
    previous: Previous | None
    entries: tuple[Entry, ...]
    certificate: str  # PEM of the broker certificate that signed it
    signature: str  # the algorithm of manifest.sig
    topics: Mapping[str, str] = field(default_factory=dict)  # role -> full topic name

    def to_json(self) -> bytes:
        body = {
            "format": FORMAT,
            "kind": KIND,
            "file": self.file,
            "seq": self.seq,
            "period": self.period,
            "until": self.until,
            "topic_prefix": self.topic_prefix,
            "topics": dict(sorted(self.topics.items())),
            "partitions": [r.to_json() for r in self.ranges],
            "previous": None
            if self.previous is None
            else {"file": self.previous.file, "manifest_sha256": self.previous.manifest_sha256},
            "entries": [{"name": e.name, "sha256": e.sha256, "size": e.size} for e in self.entries],
            "certificate": self.certificate,
            "signature": self.signature,
        }
        return json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> ArchiveManifest:
        """The manifest in `data`; ValueError when it is not one."""
        try:
            body = json.loads(data)
            if body.get("kind") != KIND or body.get("format") != FORMAT:
                raise ValueError(f"not a {KIND} manifest of format {FORMAT}")
            prev = body["previous"]
            return cls(
                file=str(body["file"]),
                seq=int(body["seq"]),
                period=str(body["period"]),
                until=str(body["until"]),
                topic_prefix=str(body["topic_prefix"]),
                ranges=tuple(
                    Range(
                        str(r["topic"]),
                        int(r["partition"]),
                        int(r["from"]),
                        int(r["to"]),
                        int(r["records"]),
                    )
                    for r in body["partitions"]
                ),
                previous=None if prev is None else Previous(prev["file"], prev["manifest_sha256"]),
                entries=tuple(
                    Entry(safe_path(str(e["name"])), str(e["sha256"]), int(e["size"]))
                    for e in body["entries"]
                ),
                certificate=str(body["certificate"]),
                signature=str(body["signature"]),
                topics={str(k): str(v) for k, v in body.get("topics", {}).items()},
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"manifest unreadable: {exc}") from exc

    def range_of(self, role: str, partition: int) -> Range | None:
        return next((r for r in self.ranges if (r.role, r.partition) == (role, partition)), None)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_name(role: str, partition: int, offset: int) -> str:
    return f"{role}/{partition}/{offset:012d}.rec"


def period_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m")


def file_name(period: str, taken: Iterable[str]) -> str:
    """`docbroker-YYYY-MM.zip`, or `.2.zip`, `.3.zip`, … when that name is taken."""
    used = set(taken)
    name, n = f"{PREFIX}{period}.zip", 1
    while name in used:
        n += 1
        name = f"{PREFIX}{period}.{n}.zip"
    return name


# --------------------------------------------------------------------- which records


def acked_by(receipts: Iterable[Record], until_ms: int) -> set[tuple[str, str]]:
    """(recipient, message id) of each acknowledgement stamped before `until_ms`."""
    return {
        (r.header_str(H.RECIPIENT), r.header_str(H.MESSAGE_ID))
        for r in receipts
        if r.header_str(H.KIND) == ReceiptKind.ACKNOWLEDGED and r.timestamp_ms < until_ms
    }


def archivable(role: str, record: Record, until_ms: int, acked: Acked) -> bool:
    if record.timestamp_ms >= until_ms:
        return False
    if role == "mailbox":
        return (record.header_str(H.RECIPIENT), record.header_str(H.MESSAGE_ID)) in acked
    return True


@dataclass(frozen=True, slots=True)
class Selected:
    """The records of one partition to archive, and the first offset not archived."""

    start: int
    records: tuple[Record, ...]
    end: int


def select(
    role: str, start: int, records: Sequence[Record], log_end: int, until_ms: int, acked: Acked
) -> Selected:
    """The contiguous prefix of `records` (one partition, in offset order, read from
    `start` up to `log_end`) that may be archived: it ends at the first record that
    may not, or at `log_end`."""
    for i, record in enumerate(records):
        if not archivable(role, record, until_ms, acked):
            return Selected(start, tuple(records[:i]), record.offset)
    return Selected(start, tuple(records), max(log_end, start))


@dataclass(frozen=True, slots=True)
class Period:
    """One archive file's worth: per partition (role, partition), its range and records."""

    period: str
    parts: Mapping[tuple[str, int], Selected]


def periods(selection: Mapping[tuple[str, int], Selected]) -> list[Period]:
    """Cut the selection into months. A record belongs to the latest month stamped on
    it or on any record before it in its partition (offset ranges stay contiguous);
    each partition appears in every period, with an empty range where it has nothing."""
    tagged: dict[tuple[str, int], list[tuple[str, Record]]] = {}
    for key, sel in selection.items():
        month, out = "", []
        for record in sel.records:
            month = max(month, period_of(record.timestamp_ms))
            out.append((month, record))
        tagged[key] = out
    months = sorted({m for rows in tagged.values() for m, _ in rows})
    cursor = {key: sel.start for key, sel in selection.items()}
    result = []
    for i, month in enumerate(months):
        last = i == len(months) - 1
        parts = {}
        for key, sel in sorted(selection.items()):
            mine = tuple(r for m, r in tagged[key] if m == month)
            later = [r for m, r in tagged[key] if m > month]
            end = later[0].offset if later else sel.end
            if not later and not last and not mine:
                end = cursor[key]  # nothing here: the rest goes with the last period
            parts[key] = Selected(cursor[key], mine, end)
            cursor[key] = end
        result.append(Period(month, parts))
    return result


# --------------------------------------------------------------------- the file's bytes


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def index_row(role: str, record: Record) -> dict[str, Any]:
    return {
        "entry": entry_name(role, record.partition, record.offset),
        "topic": role,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "key": _b64(record.key),
        "headers": [[k, _b64(v)] for k, v in record.headers],
        "tombstone": record.value is None,
    }


def header_of(row: Mapping[str, Any], name: str) -> str:
    """The last value of header `name` of an index row, as text ('' when absent)."""
    found = ""
    for k, v in row.get("headers", ()):
        if k == name and v is not None:
            found = base64.b64decode(v).decode("utf-8", "replace")
    return found


def contents(period: Period) -> tuple[dict[str, bytes], tuple[Range, ...]]:
    """The entries (name -> bytes, index.json included) and ranges of a period."""
    entries: dict[str, bytes] = {}
    rows, ranges = [], []
    for (role, partition), sel in sorted(
        period.parts.items(), key=lambda kv: (ROLES.index(kv[0][0]), kv[0][1])
    ):
        ranges.append(Range(role, partition, sel.start, sel.end, len(sel.records)))
        for record in sel.records:
            row = index_row(role, record)
            rows.append(row)
            entries[row["entry"]] = record.value or b""
    index = json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    return {INDEX: index, **entries}, tuple(ranges)


def zip_bytes(manifest: bytes, signature: bytes, entries: Mapping[str, bytes]) -> bytes:
    """The archive file: manifest.json, manifest.sig, then the entries in order;
    fixed times and attributes, so the same contents give the same bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in [(MANIFEST, manifest), (SIGNATURE, signature), *entries.items()]:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr, info.create_system = ZIP_ATTRIBUTES
            zf.writestr(info, data, compresslevel=6)
    return out.getvalue()


def entries_of(entries: Mapping[str, bytes]) -> tuple[Entry, ...]:
    return tuple(Entry(n, sha256(d), len(d)) for n, d in entries.items())


def partition_key(tp: TopicPartition, roles: Mapping[str, str]) -> tuple[str, int]:
    """(role, partition) of a full topic partition; `roles`: full topic name -> role."""
    return roles[tp.topic], tp.partition
