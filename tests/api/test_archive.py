"""`docbroker archive` on a real log (embedded, and the suite's real Kafka) holding real
documents that went through an in-process docbroker: submitted, delivered, fetched,
acknowledged (issue 14, item 2)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from broker.core.archive import MANIFEST, ArchiveManifest, zip_bytes
from broker.core.logrecords import TopicPartition
from broker.trust.detached import certificate_pem, sign_detached
from tests import pki
from tests.api.archive_kit import (
    ack,
    doc_id,
    events_settled,
    fetch,
    files_of,
    killed_at,
    mailbox,
    marks,
    now_iso,
    run,
    submit,
)
from tests.api.conftest import AgencyClient


async def deliver(api: AgencyClient, numbers: range, acked: range) -> dict[str, bytes]:
    """Submit documents `numbers`, fetch each, acknowledge those in `acked`; the bytes
    fetched, by DocumentId."""
    await submit(api, numbers)
    entries = await mailbox(api, numbers.stop)
    fetched = {}
    for n in numbers:
        fetched[doc_id(n)] = await fetch(api, entries[doc_id(n)])
    for n in acked:
        await ack(api, entries[doc_id(n)])
    await events_settled(api, len(range(0, acked.stop)))
    return fetched


class TestExport:
    async def test_export_verify_show_extract(
        self, api: AgencyClient, api_settings_env: dict[str, str], tmp_path: Path
    ) -> None:
        """Acknowledged deliveries with their receipts and events are archived in one
        signed file; the recipient's mailbox partition stops at the first entry not yet
        acknowledged (its mark says so); the archive verifies; show and extract find a
        document byte for byte; a second export adds nothing, a later one continues the
        chain; a second copy exported from the log is the same bytes."""
        env, folder = api_settings_env, tmp_path / "archive"
        fetched = await deliver(api, range(6), acked=range(4))
        until1 = now_iso()
        first = await run(env, "archive", "export", "--until", until1, str(folder), "--json")
        assert first.exit_code == 0, first.output
        assert [w["file"] for w in json.loads(first.output)["written"]] == [
            f"docbroker-{until1[:7]}.zip"
        ]
        name = f"docbroker-{until1[:7]}.zip"
        with zipfile.ZipFile(folder / name) as zf:
            manifest = ArchiveManifest.from_json(zf.read(MANIFEST))
        # the recipient's partition: its first four entries, acknowledged, then the fifth
        (held,) = [r for r in manifest.ranges if r.role == "mailbox" and r.records]
        assert held.records == 4
        part = held.partition
        found = await marks(api, wanted=sum(r.records > 0 for r in manifest.ranges))
        mark = found.get(TopicPartition(api.runtime.topics.mailbox, part))
        assert mark is not None, (found, first.output)
        assert (mark.through, mark.file) == (held.end, name)

        verified = await run(env, "archive", "verify", str(folder), "--against-log")
        assert verified.exit_code == 0, verified.output
        assert "every archive is intact" in verified.output

        shown = await run(env, "archive", "show", str(folder), doc_id(0), "--json")
        rows = json.loads(shown.output)
        assert {r["topic"] for r in rows} == {"mailbox", "receipts", "events"}
        assert {"routed", "acknowledged"} <= {r["kind"] for r in rows}
        unacked = json.loads(
            (await run(env, "archive", "show", str(folder), doc_id(5), "--json")).output
        )
        assert "mailbox" not in {r["topic"] for r in unacked}  # its envelope stays in the log
        assert (await run(env, "archive", "show", str(folder), doc_id(99))).exit_code == 1
        out = tmp_path / "out"
        assert (
            await run(env, "archive", "extract", str(folder), doc_id(0), str(out))
        ).exit_code == 0
        trail = json.loads((out / "trail.json").read_text())
        (envelope,) = [r for r in trail if r["topic"] == "mailbox"]
        assert files_of(Path(envelope["path"]).parent) == {
            Path(envelope["path"]).name: fetched[doc_id(0)]
        }

        before = files_of(folder)
        again = await run(env, "archive", "export", "--until", until1, str(folder))
        assert again.exit_code == 0 and "nothing new" in again.output
        assert files_of(folder) == before

        for n in (4, 5):
            await ack(api, (await mailbox(api, 6))[doc_id(n)])
        await events_settled(api, 6)
        until2 = now_iso()
        second = await run(env, "archive", "export", "--until", until2, str(folder))
        assert second.exit_code == 0, second.output
        assert f"docbroker-{until2[:7]}.2.zip" in second.output
        assert (await run(env, "archive", "verify", str(folder))).exit_code == 0
        rows = json.loads(
            (await run(env, "archive", "show", str(folder), doc_id(5), "--json")).output
        )
        assert any(r["topic"] == "mailbox" for r in rows)

        copy = tmp_path / "copy"
        for until in (until1, until2):
            made = await run(env, "archive", "export", "--second-copy", "--until", until, str(copy))
            assert made.exit_code == 0, made.output
        assert files_of(copy) == files_of(folder)
        refused = await run(env, "archive", "export", "--until", until2, str(tmp_path / "empty"))
        assert refused.exit_code == 1 and "archive-incomplete" in refused.output


@pytest.mark.parametrize("backend", ["embedded"])
class TestVerifyCatches:
    @pytest.fixture
    async def chain(
        self, api: AgencyClient, api_settings_env: dict[str, str], tmp_path: Path
    ) -> Path:
        """Three archive files, one per export, each of two more documents."""
        folder = tmp_path / "archive"
        for batch in range(3):
            numbers = range(batch * 2, batch * 2 + 2)
            await deliver(api, numbers, acked=numbers)
            done = await run(
                api_settings_env, "archive", "export", "--until", now_iso(), str(folder)
            )
            assert done.exit_code == 0, done.output
        assert len(files_of(folder)) == 3
        return folder

    async def verify(self, env: dict[str, str], folder: Path, *extra: str) -> str:
        result = await run(env, "archive", "verify", str(folder), *extra)
        assert result.exit_code == 1, result.output
        return result.output

    async def test_a_byte_changed(self, chain: Path, api_settings_env: dict[str, str]) -> None:
        """One byte of an entry's data changed: that entry is named as altered, and
        show refuses the file."""
        name = "docbroker-" + now_iso()[:7] + ".3.zip"  # the third export: documents 4, 5
        data = bytearray((chain / name).read_bytes())
        with zipfile.ZipFile(chain / name) as zf:
            info = next(i for i in zf.infolist() if i.filename.startswith("mailbox/"))
        at = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
        data[at] ^= 0x01
        (chain / name).write_bytes(bytes(data))
        out = await self.verify(api_settings_env, chain)
        assert f"{name}: entry {info.filename} altered" in out
        shown = await run(api_settings_env, "archive", "show", str(chain), doc_id(4))
        assert shown.exit_code == 1 and "archive-damaged" in shown.output  # not shown as it is

    async def test_a_file_removed(self, chain: Path, api_settings_env: dict[str, str]) -> None:
        """The middle file removed: named, between its neighbours; the last removed: the
        log's marks name it (--against-log)."""
        first, middle, last = sorted(files_of(chain), key=lambda n: (len(n), n))
        (chain / middle).unlink()
        assert f"{middle} missing between {first} and {last}" in await self.verify(
            api_settings_env, chain
        )
        (chain / last).unlink()
        out = await self.verify(api_settings_env, chain, "--against-log")
        assert f"{last} missing" in out

    async def test_files_swapped(self, chain: Path, api_settings_env: dict[str, str]) -> None:
        """Two files' names exchanged: the swap is named."""
        first, middle, _ = sorted(files_of(chain), key=lambda n: (len(n), n))
        (chain / first).rename(chain / "tmp")
        (chain / middle).rename(chain / first)
        (chain / "tmp").rename(chain / middle)
        out = await self.verify(api_settings_env, chain)
        (swap,) = [line for line in out.splitlines() if "files swapped:" in line]
        assert f"{first} holds {middle}'s" in swap
        assert f"{middle} holds {first}'s" in swap

    async def test_a_forged_manifest(self, chain: Path, api_settings_env: dict[str, str]) -> None:
        """An edited manifest, left with its signature: invalid; re-signed with another
        key and its certificate: not trusted."""
        name = sorted(files_of(chain), key=lambda n: (len(n), n))[1]
        with zipfile.ZipFile(chain / name) as zf:
            entries = {i.filename: zf.read(i) for i in zf.infolist()}
        raw, sig = entries.pop(MANIFEST), entries.pop("manifest.sig")
        edited = raw.replace(b'"records": 2', b'"records": 1', 1)
        assert edited != raw
        (chain / name).write_bytes(zip_bytes(edited, sig, entries))
        assert f"{name}: manifest signature invalid" in await self.verify(api_settings_env, chain)

        forger = pki.issue(pki.other_ca(), "docbroker test", uid=pki.BROKER_ID)
        body = json.loads(raw)
        body["certificate"] = certificate_pem(forger)
        forged = json.dumps(body, ensure_ascii=False, indent=1).encode() + b"\n"
        (chain / name).write_bytes(zip_bytes(forged, sign_detached(forger, forged), entries))
        out = await self.verify(api_settings_env, chain)
        assert f"{name}: manifest signature invalid" in out and "not trusted" in out


class TestKilled:
    @pytest.mark.parametrize("step", ["written", "renamed", "marked"])
    async def test_kill_9_then_again(
        self, step: str, api: AgencyClient, api_settings_env: dict[str, str], tmp_path: Path
    ) -> None:
        """An export killed after writing the partial file, after renaming it, or after
        appending its marks, run again: the folder is complete, verifies, is the same
        bytes as a second copy exported in one go, and the log's marks name it."""
        env, folder = api_settings_env, tmp_path / "archive"
        await deliver(api, range(4), acked=range(4))
        until = now_iso()
        killed = killed_at(env, step, "archive", "export", "--until", until, str(folder))
        assert killed.returncode == -9, killed.stderr
        again = await run(env, "archive", "export", "--until", until, str(folder))
        assert again.exit_code == 0, again.output
        assert not [p for p in folder.iterdir() if p.name.endswith(".partial")]
        assert (await run(env, "archive", "verify", str(folder), "--against-log")).exit_code == 0
        copy = tmp_path / "copy"
        made = await run(env, "archive", "export", "--second-copy", "--until", until, str(copy))
        assert made.exit_code == 0, made.output
        assert files_of(copy) == files_of(folder)
        (name,) = files_of(folder)
        assert {m.file for m in (await marks(api)).values()} == {name}
        shutil.rmtree(copy)
