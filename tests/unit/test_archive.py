"""The archive's pure parts: which records, the periods, the file's bytes, the checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from broker.cli import cli
from broker.cli.archive_files import export_lock
from broker.core.archive import (
    INDEX,
    MANIFEST,
    SIGNATURE,
    ArchiveManifest,
    Period,
    Previous,
    Selected,
    acked_by,
    contents,
    entries_of,
    file_name,
    periods,
    select,
    sha256,
    zip_bytes,
)
from broker.core.archive_check import FileCheck, check_chain, check_file
from broker.core.logrecords import Record
from broker.core.records import H
from broker.trust.detached import algorithm_of, certificate_pem, sign_detached, verify_detached
from broker.trust.store import TrustStore
from tests import pki

NOV = int(datetime(2026, 11, 10, tzinfo=UTC).timestamp() * 1000)
DEC = int(datetime(2026, 12, 10, tzinfo=UTC).timestamp() * 1000)
UNTIL = int(datetime(2026, 12, 20, tzinfo=UTC).timestamp() * 1000)


def rec(topic: str, offset: int, ts: int, message_id: str = "", kind: str = "") -> Record:
    headers = ((H.RECIPIENT, b"R"), (H.MESSAGE_ID, message_id.encode()), (H.KIND, kind.encode()))
    return Record(topic, 0, offset, b"R", f"value {offset}".encode(), headers, ts)


def check(data: bytes, sig: bytes, m: ArchiveManifest) -> str:
    store = TrustStore.of([pki.ca().certificate])
    return verify_detached(m.certificate, m.signature, data, sig, store=store)


def build(period: Period, seq: int = 1, previous: FileCheck | None = None) -> tuple[str, bytes]:
    """An archive file of `period`, signed with the test broker's key."""
    entries, ranges = contents(period)
    name = file_name(period.period, [previous.name] if previous else [])
    material = pki.broker()
    manifest = ArchiveManifest(
        name, seq, period.period, "2026-12-20T00:00:00.000+00:00", "t.", ranges,
        None if previous is None else Previous(previous.name, previous.manifest_sha256),
        entries_of(entries), certificate_pem(material), algorithm_of(material),
    )  # fmt: skip
    raw = manifest.to_json()
    return name, zip_bytes(raw, sign_detached(material, raw), entries)


class TestSelect:
    def test_the_mailbox_stops_at_the_first_entry_not_acknowledged(self) -> None:
        """Acknowledged entries go in up to the first that is not: `end` is its offset."""
        records = [rec("mailbox", i, NOV, f"m{i}") for i in range(4)]
        sel = select(
            "mailbox", 0, records, 4, UNTIL, frozenset({("R", "m0"), ("R", "m1"), ("R", "m3")})
        )
        assert [r.offset for r in sel.records] == [0, 1] and sel.end == 2

    def test_a_record_stamped_after_until_stops_its_partition(self) -> None:
        records = [rec("events", 0, NOV), rec("events", 1, UNTIL), rec("events", 2, NOV)]
        assert select("events", 0, records, 3, UNTIL, frozenset()).end == 1

    def test_everything_archivable_ends_at_the_log_end(self) -> None:
        """The end offset, past what the log holds after the last record (Kafka markers)."""
        sel = select("events", 5, [rec("events", 5, NOV)], 7, UNTIL, frozenset())
        assert (sel.start, len(sel.records), sel.end) == (5, 1, 7)

    def test_acknowledgements_before_until_count(self) -> None:
        receipts = [
            rec("receipts", 0, NOV, "m1", "acknowledged"),
            rec("receipts", 1, UNTIL, "m2", "acknowledged"),
            rec("receipts", 2, NOV, "m3", "fetched"),
        ]
        assert acked_by(receipts, UNTIL) == {("R", "m1")}


class TestPeriods:
    def test_one_file_per_month_offsets_contiguous(self) -> None:
        """A partition's records are cut by month; a record of November after one of
        December goes with December (ranges stay contiguous); a partition with nothing
        in a month has an empty range there."""
        events = [rec("events", 0, NOV), rec("events", 1, DEC), rec("events", 2, NOV)]
        cut = periods(
            {("events", 0): Selected(0, tuple(events), 3), ("receipts", 0): Selected(0, (), 0)}
        )
        assert [p.period for p in cut] == ["2026-11", "2026-12"]
        nov, dec = (p.parts[("events", 0)] for p in cut)
        assert (nov.start, nov.end, len(nov.records)) == (0, 1, 1)
        assert (dec.start, dec.end, len(dec.records)) == (1, 3, 2)
        assert cut[0].parts[("receipts", 0)] == Selected(0, (), 0)

    def test_file_names_of_a_month_already_archived(self) -> None:
        assert file_name("2026-12", ["docbroker-2026-12.zip"]) == "docbroker-2026-12.2.zip"


def two_files() -> list[tuple[str, bytes]]:
    nov = Period("2026-11", {("mailbox", 0): Selected(0, (rec("mailbox", 0, NOV, "m0"),), 1)})
    dec = Period("2026-12", {("mailbox", 0): Selected(1, (rec("mailbox", 1, DEC, "m1"),), 2)})
    a = build(nov)
    b = build(dec, 2, check_file(a[0], a[1], check))
    return [a, b]


class TestCheck:
    def test_an_intact_chain_passes_and_is_the_same_bytes_again(self) -> None:
        files = two_files()
        checked = [check_file(n, d, check) for n, d in files]
        assert [c.problems for c in checked] == [[], []] and check_chain(checked) == []
        assert two_files() == files  # deterministic: fixed times, deterministic signature

    def test_an_entry_changed_is_named(self) -> None:
        """An entry whose bytes differ from the manifest's SHA-256 is named as altered."""
        name, data = two_files()[0]
        entries = {**_entries(data), "mailbox/0/000000000000.rec": b"value X"}
        forged = zip_bytes(_member(data, MANIFEST), _member(data, SIGNATURE), entries)
        problems = check_file(name, forged, check).problems
        assert problems == [f"{name}: entry mailbox/0/000000000000.rec altered"]

    def test_a_byte_changed_in_the_file_is_caught(self) -> None:
        """Any one byte of the file changed, wherever it is: a problem is named."""
        name, data = two_files()[0]
        for at in range(len(data)):
            bad = bytearray(data)
            bad[at] ^= 0x01
            assert check_file(name, bytes(bad), check).problems, f"byte {at}"

    def test_an_edited_manifest_has_an_invalid_signature(self) -> None:
        name, data = two_files()[0]
        raw = _member(data, MANIFEST).replace(b'"records": 1', b'"records": 0')
        forged = zip_bytes(raw, _member(data, SIGNATURE), _entries(data))
        assert any(
            "manifest signature invalid (the signature does not match" in p
            for p in check_file(name, forged, check).problems
        )

    def test_a_manifest_signed_by_another_key_is_not_trusted(self) -> None:
        name, data = two_files()[0]
        forger = pki.issue(pki.other_ca(), "docbroker test", uid=pki.BROKER_ID)
        body = json.loads(_member(data, MANIFEST))
        body["certificate"] = certificate_pem(forger)
        raw = json.dumps(body).encode()
        forged = zip_bytes(raw, sign_detached(forger, raw), _entries(data))
        (problem,) = check_file(name, forged, check).problems
        assert "manifest signature invalid" in problem and "not trusted" in problem

    def test_missing_swapped_and_overlapping_files(self) -> None:
        """A file missing between two is named; two files' names exchanged are named
        as swapped; an offset range archived twice is named."""
        (a, da), (b, db) = two_files()
        third = Period("2026-12", {("mailbox", 0): Selected(2, (rec("mailbox", 2, DEC, "m2"),), 3)})
        c, dc = build(third, 3, check_file(b, db, check))
        removed = [check_file(a, da, check), check_file(c, dc, check)]
        assert check_chain(removed) == [
            f"{b} missing between {a} and {c}",
            f"mailbox/0: offsets 1–1 are in no archive (between {a} and {c})",
        ]
        swapped = [check_file(a, db, check), check_file(b, da, check)]
        assert f"files swapped: {a} holds {b}'s archive and {b} holds {a}'s" in check_chain(swapped)
        twice = Period("2026-12", {("mailbox", 0): Selected(0, (rec("mailbox", 0, DEC, "m1"),), 2)})
        checked = [
            check_file(a, da, check),
            check_file(*build(twice, 2, checked_a := check_file(a, da, check)), check),
        ]
        assert checked_a.problems == []
        assert any("are in both" in p for p in check_chain(checked))

    def test_a_manifest_round_trips(self) -> None:
        name, data = two_files()[1]
        raw = _member(data, MANIFEST)
        manifest = ArchiveManifest.from_json(raw)
        assert manifest.to_json() == raw and manifest.previous is not None
        assert INDEX in {e.name for e in manifest.entries}
        assert sha256(raw) == check_file(name, data, check).manifest_sha256


def _member(data: bytes, name: str) -> bytes:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.read(name)


def _entries(data: bytes) -> dict[str, bytes]:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist() if n not in (MANIFEST, SIGNATURE)}


def test_one_export_at_a_time(tmp_path: Path) -> None:
    """An export into a folder another export is writing into is refused (exit 2)."""
    with export_lock(tmp_path):
        result = CliRunner().invoke(
            cli,
            ["archive", "export", "--until", "2026-12-01", str(tmp_path)],
            env={"DOCBROKER_DATA_DIR": str(tmp_path / "data")},
        )
    assert result.exit_code == 2 and "another archive export" in result.output


def test_until_must_be_a_date_or_a_time(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["archive", "export", "--until", "soon", str(tmp_path)])
    assert result.exit_code == 2 and "give a date" in result.output
