"""Checking signed archives (`docbroker archive verify`): each file, then the chain. Pure.

One file: a readable ZIP holding manifest.json and manifest.sig, the signature
valid (the shell passes a checker that knows the trusted CA or certificate), every
entry the manifest names there with its SHA-256, nothing else there, the index
consistent with the manifest's offset ranges, and the manifest naming the file it
is in. The folder: the files in order of their manifests' sequence numbers, each
linking to the manifest SHA-256 of the one before, none missing between two, and
per partition the offset ranges contiguous (no gap, no overlap).
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from broker.core.archive import (
    INDEX,
    MANIFEST,
    SIGNATURE,
    ZIP_ATTRIBUTES,
    ZIP_TIME,
    ArchiveManifest,
    sha256,
)

_LOCAL = struct.Struct("<4s2B4HL2L2H")  # a ZIP local file header (30 bytes)
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # a central directory record, before its name
_END = struct.Struct("<4s4H2LH")  # the end of central directory record
_VERSION = 20  # the ZIP version export writes and needs (2.0: deflate)

# (manifest bytes, signature, manifest) -> why the signature cannot be trusted, or ""
SignatureCheck = Callable[[bytes, bytes, ArchiveManifest], str]


@dataclass
class FileCheck:
    """What one archive file holds and what is wrong with it."""

    name: str
    manifest: ArchiveManifest | None = None
    manifest_sha256: str = ""
    problems: list[str] = field(default_factory=list)
    index: list[dict] = field(default_factory=list)


def read_zip(name: str, data: bytes) -> tuple[zipfile.ZipFile | None, list[str]]:
    try:
        return zipfile.ZipFile(io.BytesIO(data)), []
    except (zipfile.BadZipFile, ValueError, NotImplementedError, RuntimeError) as exc:
        return None, [f"{name}: not a readable ZIP file ({exc})"]


def member(zf: zipfile.ZipFile, entry: str) -> bytes | None:
    """The bytes of an entry; None when they cannot be read back (CRC, compression)."""
    try:
        return zf.read(entry)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        ValueError,
        KeyError,
        OSError,
        NotImplementedError,
        RuntimeError,
    ):
        return None


def check_file(name: str, data: bytes, signature_check: SignatureCheck) -> FileCheck:
    """Every check of one archive file (its bytes), each problem named precisely."""
    out = FileCheck(name)
    zf, out.problems = read_zip(name, data)
    if zf is None:
        return out
    with zf:
        present = [i.filename for i in zf.infolist()]
        out.problems += _structure(name, data, zf)
        if len(set(present)) != len(present):
            out.problems.append(f"{name}: an entry is in the file twice")
        raw = member(zf, MANIFEST) if MANIFEST in present else None
        if raw is None:
            out.problems.append(f"{name}: {MANIFEST} missing or unreadable")
            return out
        try:
            manifest = ArchiveManifest.from_json(raw)
        except ValueError as exc:
            out.problems.append(f"{name}: {exc}")
            return out
        out.manifest, out.manifest_sha256 = manifest, sha256(raw)
        sig = member(zf, SIGNATURE) if SIGNATURE in present else None
        if sig is None:
            out.problems.append(f"{name}: {SIGNATURE} missing: the manifest is not signed")
        elif reason := signature_check(raw, sig, manifest):
            out.problems.append(f"{name}: manifest signature invalid ({reason})")
        out.problems += _entries(name, zf, manifest, present)
        out.index, index_problems = _index(name, zf, manifest)
        out.problems += index_problems
    if manifest.file != name:
        out.problems.append(f"{name}: holds the archive {manifest.file} (seq {manifest.seq})")
    return out


def _structure(name: str, data: bytes, zf: zipfile.ZipFile) -> list[str]:
    """The ZIP's own bytes as export writes them: each local header agrees with the
    central directory, every field has its fixed value, and the entries, the
    directory and its end cover the file exactly (a byte changed anywhere outside an
    entry's data shows here; inside, its CRC and SHA-256 do)."""
    pos, problems = 0, []
    for info in sorted(zf.infolist(), key=lambda i: i.header_offset):
        fixed = (info.date_time, info.compress_type, info.external_attr, info.create_system)
        fixed += (info.comment, info.extra, info.flag_bits, info.volume, info.internal_attr)
        if fixed != (ZIP_TIME, zipfile.ZIP_DEFLATED, *ZIP_ATTRIBUTES, b"", b"", 0, 0, 0):
            problems.append(f"{name}: entry {info.filename}: its ZIP directory record changed")
        head = data[info.header_offset : info.header_offset + _LOCAL.size]
        local = _LOCAL.unpack(head) if len(head) == _LOCAL.size else ()
        expected = (b"PK\x03\x04", _VERSION, 0, 0, info.compress_type)
        expected += (*_dos_time(info.date_time), info.CRC, info.compress_size, info.file_size)
        expected += (len(info.filename.encode()), 0)
        at = info.header_offset + _LOCAL.size
        named = data[at : at + len(info.filename.encode())]
        if info.header_offset != pos or local != expected or named != info.filename.encode():
            problems.append(f"{name}: entry {info.filename}: its ZIP header changed")
        start = info.header_offset + _LOCAL.size + len(info.filename.encode())
        if not _whole_stream(data[start : start + info.compress_size]):
            problems.append(f"{name}: entry {info.filename}: its compressed data changed")
        pos = start + info.compress_size
    try:
        canonical = _directory(zf.infolist(), pos)
    except struct.error:  # a field out of range: certainly not what export wrote
        canonical = b""
    if data[pos:] != canonical:
        problems.append(f"{name}: bytes changed in the ZIP structure (its directory or end)")
    return problems


def _directory(infos: Sequence[zipfile.ZipInfo], at: int) -> bytes:
    """The central directory and its end as export writes them, for these entries."""
    records = []
    for i in infos:
        fields = (b"PK\x01\x02", _VERSION, i.create_system, _VERSION, 0, 0, i.compress_type)
        fields += (*_dos_time(i.date_time), i.CRC, i.compress_size, i.file_size)
        fields += (len(i.filename.encode()), 0, 0, 0, 0, i.external_attr, i.header_offset)
        records.append(_CENTRAL.pack(*fields) + i.filename.encode())
    out = b"".join(records)
    return out + _END.pack(b"PK\x05\x06", 0, 0, len(infos), len(infos), len(out), at, 0)


def _whole_stream(raw: bytes) -> bool:
    """Whether `raw` is one complete deflate stream, nothing after it."""
    inflate = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflate.decompress(raw)
    except zlib.error:
        return False
    return inflate.eof and not inflate.unused_data


def _dos_time(t: tuple[int, ...]) -> tuple[int, int]:
    return (t[3] << 11 | t[4] << 5 | t[5] // 2, (t[0] - 1980) << 9 | t[1] << 5 | t[2])


def _entries(
    name: str, zf: zipfile.ZipFile, manifest: ArchiveManifest, present: Sequence[str]
) -> list[str]:
    problems, there = [], set(present)
    for entry in manifest.entries:
        if entry.name not in there:
            problems.append(f"{name}: entry {entry.name} missing")
            continue
        got = member(zf, entry.name)
        if got is None or sha256(got) != entry.sha256 or len(got) != entry.size:
            problems.append(f"{name}: entry {entry.name} altered")
    named = {e.name for e in manifest.entries} | {MANIFEST, SIGNATURE}
    problems += [f"{name}: entry {e} is not in the manifest" for e in present if e not in named]
    return problems


def _index(
    name: str, zf: zipfile.ZipFile, manifest: ArchiveManifest
) -> tuple[list[dict], list[str]]:
    """The index rows; problems where they disagree with the manifest's ranges."""
    if INDEX not in {e.name for e in manifest.entries}:
        return [], [f"{name}: the manifest names no {INDEX}"]
    raw = member(zf, INDEX)
    try:
        rows = json.loads(raw or b"")
    except ValueError:
        rows = None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return [], [f"{name}: {INDEX} unreadable"]
    problems = []
    entries = {e.name for e in manifest.entries}
    counts: dict[tuple[str, int], int] = {}
    for row in rows:
        r = manifest.range_of(row.get("topic"), row.get("partition"))
        if r is None or not r.start <= row.get("offset", -1) < r.end:
            problems.append(
                f"{name}: {INDEX} names {row.get('entry')} outside the manifest's ranges"
            )
        elif row.get("entry") not in entries:
            problems.append(f"{name}: {INDEX} names {row.get('entry')}, not in the manifest")
        key = (row.get("topic"), row.get("partition"))
        counts[key] = counts.get(key, 0) + 1
    for r in manifest.ranges:
        if counts.get((r.role, r.partition), 0) != r.records:
            problems.append(f"{name}: {r.role}/{r.partition} holds a different number of records")
    return rows, problems


def check_chain(files: Sequence[FileCheck]) -> list[str]:
    """Order, links and ranges across the files of a folder (those with a manifest)."""
    readable = [f for f in files if f.manifest is not None]
    problems = _swaps(readable)
    by_seq = sorted(readable, key=lambda f: f.manifest.seq)  # type: ignore[union-attr]
    prev: FileCheck | None = None
    for f in by_seq:
        m = f.manifest
        assert m is not None
        if prev is None:
            if m.seq != 1 or m.previous is not None:
                missing = m.previous.file if m.previous else "an earlier archive"
                problems.append(f"{missing} missing before {f.name} (seq {m.seq} is not the first)")
        else:
            problems += _link(prev, f)
        prev = f
    return problems + _ranges(by_seq)


def _swaps(files: Sequence[FileCheck]) -> list[str]:
    holds = {f.name: f.manifest.file for f in files if f.manifest and f.manifest.file != f.name}
    out, seen = [], set()
    for name, other in sorted(holds.items()):
        if name in seen:
            continue
        if holds.get(other) == name:
            out.append(f"files swapped: {name} holds {other}'s archive and {other} holds {name}'s")
            seen |= {name, other}
    return out


def _link(prev: FileCheck, f: FileCheck) -> list[str]:
    pm, m = prev.manifest, f.manifest
    assert pm is not None and m is not None
    if m.seq == pm.seq:
        return [f"{prev.name} and {f.name} both claim to be archive {m.seq}"]
    if m.seq != pm.seq + 1:
        missing = m.previous.file if m.previous else f"archive {pm.seq + 1}"
        gap = f"{m.seq - pm.seq - 1} file(s)" if m.seq - pm.seq > 2 else missing
        return [f"{gap} missing between {pm.file} and {m.file}"]
    if m.previous is None or m.previous.manifest_sha256 != prev.manifest_sha256:
        return [
            f"{m.file}: its link to the previous archive is not {pm.file}'s manifest digest "
            f"(chain broken: {pm.file} was replaced or re-signed)"
        ]
    if m.previous.file != pm.file:
        return [f"{m.file}: its previous archive is named {m.previous.file}, not {pm.file}"]
    return []


def _ranges(by_seq: Sequence[FileCheck]) -> list[str]:
    """Per partition, each archive's range starts where the one before ended."""
    ends: dict[tuple[str, int], tuple[int, str]] = {}
    out = []
    for f in by_seq:
        assert f.manifest is not None
        for r in f.manifest.ranges:
            key = (r.role, r.partition)
            if key in ends:
                end, where = ends[key]
                if r.start > end:
                    out.append(
                        f"{r.role}/{r.partition}: offsets {end}–{r.start - 1} are in no archive "
                        f"(between {where} and {f.manifest.file})"
                    )
                elif r.start < end:
                    out.append(
                        f"{r.role}/{r.partition}: offsets {r.start}–{end - 1} are in both "
                        f"{where} and {f.manifest.file}"
                    )
            ends[key] = (r.end, f.manifest.file)
    return out


def chain_ends(files: Sequence[FileCheck]) -> Mapping[tuple[str, int], tuple[int, FileCheck]]:
    """Per partition, where the folder's archives end and the last file that holds any
    of its records (the one a mark names)."""
    out: dict[tuple[str, int], tuple[int, FileCheck]] = {}
    for f in sorted((f for f in files if f.manifest), key=lambda f: f.manifest.seq):  # type: ignore[union-attr]
        for r in f.manifest.ranges:  # type: ignore[union-attr]
            key = (r.role, r.partition)
            if r.end > r.start or key not in out:
                out[key] = (r.end, f)
    return out
