"""`docbroker archive export|verify|show|extract`: the signed archive (README, Archive).

The format and which records go in are broker.core.archive; the checks
broker.core.archive_check; the folder on disk broker.cli.archive_files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from broker.cli.archive_files import (
    check_folder,
    drop_partials,
    export_lock,
    parse_until,
    signature_check,
    step,
    write_durably,
)
from broker.cli.base import cli, emit, json_option, run_with_log, settings_of
from broker.clock import now_ms
from broker.core.archive import (
    ArchiveManifest,
    Period,
    Previous,
    Selected,
    acked_by,
    contents,
    entries_of,
    file_name,
    header_of,
    periods,
    select,
    sha256,
    zip_bytes,
)
from broker.core.archive_check import (
    FileCheck,
    SignatureCheck,
    chain_ends,
    check_chain,
    check_file,
)
from broker.core.archived import ArchiveMark
from broker.core.errors import EXIT_OK, EXIT_REFUSED, InputRefused
from broker.core.logrecords import TopicPartition
from broker.core.problems import Problem
from broker.core.receipts import ReceiptKind
from broker.core.records import H, iso_ms
from broker.core.topics import Topics
from broker.log.interface import DurableLog
from broker.trust.certs import KeyMaterial
from broker.trust.detached import algorithm_of, certificate_pem, sign_detached
from broker.views.archive import append_marks, archived_topics, read_marks, read_tails


@cli.group()
def archive() -> None:
    """The signed archive: what may leave the log, in hash-chained ZIP files."""


def refuse(code: str, messages: Sequence[str]) -> InputRefused:
    return InputRefused([Problem(code, m) for m in messages])


# --------------------------------------------------------------------- export


@dataclass
class Export:
    """One export's inputs and what it did."""

    directory: Path
    until_ms: int
    material: KeyMaterial
    check: SignatureCheck
    files: list[FileCheck]
    second_copy: bool = False
    written: list[dict[str, Any]] = field(default_factory=list)
    marks: int = 0

    def starts(self, roles: Mapping[str, str]) -> dict[TopicPartition, int]:
        """Per partition, where the folder's archives end (where this export starts)."""
        full = {role: topic for topic, role in roles.items()}
        return {
            TopicPartition(full[role], p): end
            for (role, p), (end, _) in chain_ends(self.files).items()
        }


def _settled_marks(
    job: Export, marks: Mapping[TopicPartition, ArchiveMark], roles: Mapping[str, str]
) -> list[ArchiveMark]:
    """Marks the folder holds but the log lacks (a kill -9 between rename and marks);
    refuses a folder that lacks what the log's marks say was archived."""
    ends = chain_ends(job.files)
    missing, resumed = [], []
    for tp, mark in marks.items():
        role = roles.get(tp.topic)
        end = ends.get((role, tp.partition), (0, None))[0] if role else 0
        if role and mark.through > end and not job.second_copy:
            missing.append(
                f"{mark.file} holds {tp} below {mark.through}: it is not in {job.directory}"
            )
    if missing:
        raise refuse(
            "archive-incomplete",
            [*missing, "give the folder that holds the archive (or --second-copy)"],
        )
    full = {role: topic for topic, role in roles.items()}
    for (role, p), (end, f) in ends.items():
        tp = TopicPartition(full[role], p)
        known = marks.get(tp)
        if end > 0 and (known is None or known.through < end) and not job.second_copy:
            resumed.append(ArchiveMark(tp, end, f.name, f.manifest_sha256, now_ms()))
    return resumed


def _prior_acks(files: Sequence[FileCheck], until_ms: int) -> set[tuple[str, str]]:
    """Acknowledgements already archived (they may have left the log)."""
    return {
        (header_of(row, H.RECIPIENT), header_of(row, H.MESSAGE_ID))
        for f in files
        for row in f.index
        if row.get("topic") == "receipts"
        and header_of(row, H.KIND) == ReceiptKind.ACKNOWLEDGED
        and row.get("timestamp_ms", until_ms) < until_ms
    }


async def _export(job: Export, log_: DurableLog, topics: Topics) -> None:
    roles = archived_topics(topics)
    resumed = _settled_marks(job, await read_marks(log_, topics), roles)
    await append_marks(log_, topics, resumed)
    job.marks += len(resumed)
    starts = job.starts(roles)
    tails, ends = await read_tails(log_, list(roles), starts)
    acked = _prior_acks(job.files, job.until_ms) | acked_by(
        (r for tp, rs in tails.items() if roles[tp.topic] == "receipts" for r in rs), job.until_ms
    )
    selection: dict[tuple[str, int], Selected] = {}
    for tp, end in ends.items():
        key = (roles[tp.topic], tp.partition)
        selection[key] = select(
            key[0], starts.get(tp, 0), tails.get(tp, []), end, job.until_ms, frozenset(acked)
        )
    for period in periods(selection):
        await _write_period(job, period, log_, topics, roles)


async def _write_period(
    job: Export, period: Period, log_: DurableLog, topics: Topics, roles: Mapping[str, str]
) -> None:
    entries, ranges = contents(period)
    if not any(r.records for r in ranges):
        return
    last = max(job.files, key=lambda f: f.manifest.seq, default=None)  # type: ignore[union-attr]
    name = file_name(period.period, (f.name for f in job.files))
    manifest = ArchiveManifest(
        file=name,
        seq=1 if last is None else last.manifest.seq + 1,  # type: ignore[union-attr]
        period=period.period,
        until=iso_ms(job.until_ms) or "",
        topic_prefix=topics.mailbox.removesuffix("mailbox"),
        ranges=ranges,
        previous=None if last is None else Previous(last.name, last.manifest_sha256),
        entries=entries_of(entries),
        certificate=certificate_pem(job.material),
        signature=algorithm_of(job.material),
        topics={role: topic for topic, role in roles.items()},
    )
    raw = manifest.to_json()
    data = zip_bytes(raw, sign_detached(job.material, raw), entries)
    target = job.directory / name
    checked: list[FileCheck] = []

    def verify(written: bytes) -> list[str]:
        checked.append(check_file(name, written, job.check))
        return checked[-1].problems

    write_durably(target, data, verify)
    job.files.append(checked[-1])
    full = {role: topic for topic, role in roles.items()}
    marks = [
        ArchiveMark(TopicPartition(full[r.role], r.partition), r.end, name, sha256(raw), now_ms())
        for r in ranges
        if r.end > r.start
    ]
    if not job.second_copy:
        await append_marks(log_, topics, marks)
        job.marks += len(marks)
    step("marked")
    job.written.append(
        {
            "file": name,
            "bytes": len(data),
            "records": sum(r.records for r in ranges),
            "seq": manifest.seq,
        }
    )


def _until(value: str) -> str:
    try:
        return parse_until(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"{value!r}: give a date (2026-12-01) or an ISO time") from None


def _locked_export(
    ctx: click.Context, directory: Path, until: str, second_copy: bool
) -> tuple[Export, list[str], str]:
    """The export, the folder's lock held: (what it did, partial files dropped, trust)."""
    from broker.keys.trust import load_trust

    settings = settings_of(ctx)
    dropped = drop_partials(directory)
    check, trusts = signature_check(settings)
    files = check_folder(directory, check)
    problems = [p for f in files for p in f.problems] + check_chain(files)
    if problems:
        raise refuse(
            "archive-damaged", [*problems, "nothing exported: run docbroker archive verify"]
        )
    job = Export(
        directory,
        int(parse_until(until).timestamp() * 1000),
        load_trust(settings).material,
        check,
        files,
        second_copy,
    )
    run_with_log(ctx, lambda log_, topics: _export(job, log_, topics))
    return job, dropped, trusts


@archive.command("export")
@click.option(
    "--until",
    "until",
    required=True,
    callback=lambda _ctx, _param, value: _until(value),
    help="archive what was stamped before this date (its midnight) or ISO time, UTC",
)
@click.option(
    "--second-copy",
    is_flag=True,
    help="write into a folder the log's archive marks do not name (a second copy)",
)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@json_option
@click.pass_context
def archive_export(
    ctx: click.Context, until: str, second_copy: bool, directory: Path, as_json: bool
) -> None:
    """Archive into DIRECTORY what may leave the log: delivered and acknowledged
    envelopes, their receipts and the audit events, stamped before --until, one
    signed ZIP file per month. Incremental (it starts where the folder's archives
    end), resumable after a kill, idempotent."""
    import time

    started = time.monotonic()
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    with export_lock(directory):
        job, dropped, trusts = _locked_export(ctx, directory, until, second_copy)
    seconds = time.monotonic() - started
    lines = [f"dropped {n} (left by an export that did not end)" for n in dropped]
    lines += [
        f"{w['file']}: {w['records']} records, {w['bytes']:,} bytes (archive {w['seq']})"
        for w in job.written
    ]
    if not job.written:
        lines.append(f"nothing new to archive before {until} in {directory}")
    lines.append(f"{job.marks} archive marks appended; {seconds:.1f} s")
    emit(
        {
            "ok": True,
            "written": job.written,
            "marks": job.marks,
            "seconds": round(seconds, 3),
            "trusts": trusts,
        },
        as_json,
        "\n".join(lines),
    )


# --------------------------------------------------------------------- verify


async def _marks_problems(
    log_: DurableLog, topics: Topics, files: Sequence[FileCheck]
) -> list[str]:
    """What the log's marks say the folder holds and it does not."""
    by_name = {f.name: f for f in files}
    roles = archived_topics(topics)
    out = []
    for tp, mark in sorted((await read_marks(log_, topics)).items()):
        if tp.topic not in roles:
            continue
        f = by_name.get(mark.file)
        if f is None or f.manifest is None or f.manifest.file != mark.file:
            out.append(
                f"{mark.file} missing (the log's archive mark of {tp} names it, "
                f"through {mark.through})"
            )
        elif f.manifest_sha256 != mark.manifest_sha256:
            out.append(
                f"{mark.file}: its manifest is not the one the log's archive mark of {tp} names"
            )
    return sorted(set(out))


@archive.command("verify")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--ca",
    "ca_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="trust certificates this CA issued (default: trust.ca_files)",
)
@click.option(
    "--cert",
    "cert_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="trust this broker certificate",
)
@click.option(
    "--against-log",
    is_flag=True,
    help="also check that every file the log's archive marks name is there",
)
@json_option
@click.pass_context
def archive_verify(
    ctx: click.Context,
    directory: Path,
    ca_files: tuple[Path, ...],
    cert_file: Path | None,
    against_log: bool,
    as_json: bool,
) -> None:
    """Check every archive file of DIRECTORY (entries, manifest, signature), their
    chain (order, links, offset ranges); exit 1 naming each problem."""
    check, trusts = signature_check(settings_of(ctx), ca_files, cert_file)
    files = check_folder(directory, check)
    problems = [p for f in files for p in f.problems] + check_chain(files)
    if against_log:
        problems += run_with_log(ctx, lambda log_, topics: _marks_problems(log_, topics, files))
    lines = [f"{len(files)} archive files in {directory}; signatures: {trusts}"]
    for f in sorted(files, key=lambda f: (f.manifest is None, f.manifest.seq if f.manifest else 0)):
        if f.manifest is not None:
            m = f.manifest
            lines.append(
                f"  {f.name}: archive {m.seq}, {m.period}, "
                f"{sum(r.records for r in m.ranges)} records"
            )
    lines += [f"PROBLEM {p}" for p in problems]
    if not problems:
        lines.append("every archive is intact, signed and in its place in the chain")
    data = {
        "files": [f.name for f in files],
        "problems": problems,
        "ok": not problems,
        "trusts": trusts,
    }
    emit(data, as_json, "\n".join(lines))
    ctx.exit(EXIT_REFUSED if problems else EXIT_OK)


# --------------------------------------------------------------------- show, extract


def _document_rows(
    ctx: click.Context, directory: Path, document_id: str, sender: str | None
) -> list[tuple[FileCheck, dict[str, Any]]]:
    """The index rows of a document in the archives, in order; `archive-damaged` when a
    file that holds any of them does not verify (its bytes are not what was signed)."""
    check, _ = signature_check(settings_of(ctx))
    files = check_folder(directory, check)
    out = []
    for f in sorted((f for f in files if f.manifest), key=lambda f: f.manifest.seq):  # type: ignore[union-attr]
        for row in f.index:
            if header_of(row, H.DOCUMENT_ID) != document_id:
                continue
            if sender and header_of(row, H.SENDER) != sender:
                continue
            out.append((f, row))
    if damaged := sorted({p for f, _ in out for p in f.problems}):
        raise refuse("archive-damaged", [*damaged, "run docbroker archive verify"])
    if not out:
        from broker.core.errors import NotFound

        raise NotFound(f"no record of document {document_id} in the archives of {directory}")
    return out


def _entry_bytes(directory: Path, f: FileCheck, entry: str) -> bytes:
    import zipfile

    with zipfile.ZipFile(directory / f.name) as zf:
        return zf.read(entry)


def _describe(directory: Path, f: FileCheck, row: dict[str, Any]) -> dict[str, Any]:
    kind = header_of(row, H.KIND)
    if row["topic"] == "events":
        kind = json.loads(_entry_bytes(directory, f, row["entry"])).get("type", "")
    return {
        "file": f.name,
        "entry": row["entry"],
        "topic": row["topic"],
        "partition": row["partition"],
        "offset": row["offset"],
        "at": iso_ms(row["timestamp_ms"]),
        "kind": kind,
        "sender": header_of(row, H.SENDER),
        "recipient": header_of(row, H.RECIPIENT),
        "message_id": header_of(row, H.MESSAGE_ID),
    }


@archive.command("show")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("document_id")
@click.option("--sender", help="the sending agency, when others used the id too")
@json_option
@click.pass_context
def archive_show(
    ctx: click.Context, directory: Path, document_id: str, sender: str | None, as_json: bool
) -> None:
    """A document's envelopes, receipts and audit events in the archives of DIRECTORY."""
    found = [
        _describe(directory, f, row)
        for f, row in _document_rows(ctx, directory, document_id, sender)
    ]
    lines = [
        f"{d['at']}  {d['topic']:<8} {d['kind']:<18} {d['sender']} -> "
        f"{d['recipient'] or '-'}  {d['file']}:{d['entry']}"
        for d in found
    ]
    emit(found, as_json, "\n".join(lines))


@archive.command("extract")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("document_id")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--sender", help="the sending agency, when others used the id too")
@json_option
@click.pass_context
def archive_extract(
    ctx: click.Context,
    directory: Path,
    document_id: str,
    out: Path,
    sender: str | None,
    as_json: bool,
) -> None:
    """Write a document's records out of the archives of DIRECTORY into OUT, byte for
    byte (OUT/FILE/mailbox/P/OFFSET.rec, …), with trail.json describing each."""
    found = []
    for f, row in _document_rows(ctx, directory, document_id, sender):
        target = out / f.name.removesuffix(".zip") / row["entry"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_entry_bytes(directory, f, row["entry"]))
        found.append({**_describe(directory, f, row), "path": str(target)})
    (out / "trail.json").write_text(json.dumps(found, ensure_ascii=False, indent=2) + "\n")
    emit(
        {"ok": True, "records": found},
        as_json,
        f"{len(found)} records of {document_id} written into {out}",
    )
