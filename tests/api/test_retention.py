"""Retention end to end, in process, on both backends (the Kafka run on the suite's
real broker, its topics keeping everything: docbroker prunes by its own rules).

Retention is shortened to seconds (days are fractions: 2 s = 2/86400 days). After
prunes ran: an unfetched document still reaches its recipient byte for byte, and so
does an acknowledged one held behind it; acknowledged and aged ones are gone (410
`archived`); the audit trail still verifies; a mailbox view rebuilt from the pruned
log still serves what is held; on embedded, the file's space comes back.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.http_api import build_app
from broker.config import load_settings
from broker.core.archived import ArchiveMark, latest_marks, mark_record
from broker.core.logrecords import TopicPartition
from broker.runtime import Runtime
from broker.views.audit import read_all, verify_audit
from tests.api.conftest import AgencyClient
from tests.api.test_envelope_flow import XML, wait_for_mailbox
from tests.edxml_samples import document
from tests.forwarded import assert_forwarded

pytestmark = [pytest.mark.usefixtures("no_blocking_loop"), pytest.mark.slow]

AGE_S = 2.0
BUSY, QUIET = "000.00.02.H35", "000.00.01.H35"  # acknowledges everything / never fetches
SENDER = "000.00.00.H35"  # sends them all; acknowledges the statuses 01 that come back


@pytest.fixture
def api_settings_env(api_settings_env: dict[str, str]) -> dict[str, str]:
    """One partition per topic (the order of mailbox entries is the order sent), every
    age AGE_S seconds, the events too; prunes called by the test (not the timer)."""
    days = str(AGE_S / 86400)
    return {
        **api_settings_env,
        "DOCBROKER_BACKEND_PARTITIONS": "1",
        "DOCBROKER_RETENTION_ENABLED": "false",
        **{
            f"DOCBROKER_RETENTION_{name.upper()}_DAYS": days
            for name in ("mailbox", "inbound", "upstream", "receipts", "rejected", "events")
        },
    }


async def send(api: AgencyClient, recipient: str, n: int) -> dict:
    data = document(
        recipients=(recipient,),
        document_id=f"000.00.00.H35,2026/11/24,{n}/UBND-VP",
        padding=30_000,
    )
    resp = await api.post("/v1/envelopes", data=data, headers=XML)
    assert resp.status == 202, await resp.text()
    return {"data": data, **(await resp.json())}


async def fetch(api: AgencyClient, agency: str, message_id: str) -> tuple[int, bytes, dict]:
    resp = await api.get(f"/v1/mailboxes/{agency}/envelopes/{message_id}")
    body = await resp.read()
    return resp.status, body, (await resp.json()) if resp.status >= 400 else {}


async def ack(api: AgencyClient, agency: str, message_id: str) -> None:
    resp = await api.post(f"/v1/mailboxes/{agency}/envelopes/{message_id}/ack")
    assert resp.status == 200, await resp.text()


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`docbroker ARGS` as an administrator runs it: its own process, on the same log."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "broker",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return await proc.wait(), out.decode(), err.decode()


async def archive_everything(runtime: Runtime) -> None:
    """What `docbroker archive export` leaves behind: a mark per partition of the
    topics it archives (mailbox, receipts, events), here at their ends."""
    t = runtime.topics
    ends = await runtime.log.end_offsets([t.mailbox, t.receipts, t.events])
    now = int(time.time() * 1000)
    marks = {
        tp: ArchiveMark(tp, end, "test-archive.zip", "00" * 32, now) for tp, end in ends.items()
    }
    await runtime.log.append([mark_record(t.archived, mark) for mark in marks.values()])
    # readable once committed (on Kafka: once the transaction's marker is written)
    for _ in range(100):
        if latest_marks(await read_all(runtime.log, t.archived)) == marks:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the archive marks are not readable")


async def test_pruning_keeps_what_is_owed_and_answers_archived_for_the_rest(
    api: AgencyClient, api_settings_env: dict[str, str], tmp_path: Path, backend: str
) -> None:
    runtime = api.runtime
    log, t = runtime.log, runtime.topics
    # 12 documents acknowledged by BUSY (and the statuses 01 they send back by SENDER),
    # then one QUIET never fetches, then one more BUSY acknowledges (held behind the
    # unfetched one in the mailbox partition).
    acked = []
    for n in range(12):
        await send(api, BUSY, n)
        (entry,) = await wait_for_mailbox(api, BUSY)
        assert (await fetch(api, BUSY, entry["message_id"]))[0] == 200
        await ack(api, BUSY, entry["message_id"])
        acked.append(entry["message_id"])
    for entry in await wait_for_mailbox(api, SENDER, 12):  # the statuses 01 (đã đến)
        assert (await fetch(api, SENDER, entry["message_id"]))[0] == 200
        await ack(api, SENDER, entry["message_id"])
    unfetched = await send(api, QUIET, 100)
    (quiet_entry,) = await wait_for_mailbox(api, QUIET)
    behind = await send(api, BUSY, 101)
    (behind_entry,) = await wait_for_mailbox(api, BUSY)
    assert (await fetch(api, BUSY, behind_entry["message_id"]))[0] == 200
    await ack(api, BUSY, behind_entry["message_id"])
    # its status 01: the pipeline has committed every submission and receipt before it
    await wait_for_mailbox(api, SENDER, 1)
    await asyncio.sleep(AGE_S + 0.5)

    # Nothing is archived yet: with require_archive (the default) nothing archived
    # goes; inbound (not archived: its packages are in the deliveries) goes by age.
    first = await runtime.pruner.prune()
    assert set(first) <= {t.inbound}, first
    await archive_everything(runtime)
    space_before = await log.space() if backend == "embedded" else None
    began = time.monotonic()
    removed = await runtime.pruner.prune()
    prune_seconds = time.monotonic() - began
    starts = await log.start_offsets([t.mailbox, t.inbound, t.events, t.receipts])
    print(f"\n[{backend}] removed {removed} in {prune_seconds:.3f} s; starts {starts}")
    # Offsets passed (on Kafka, transaction markers count too): the mailbox now starts
    # at the unfetched entry, the first one it owes.
    quiet = runtime.directory.current.find(QUIET)
    assert quiet is not None
    held = await runtime.view.get(quiet.code, quiet_entry["message_id"])
    assert held is not None
    assert starts[TopicPartition(t.mailbox, 0)] == held.offset
    assert removed[t.mailbox] >= 24 and removed.get(t.inbound, 0) + first.get(t.inbound, 0) >= 14
    assert removed[t.events] > 0 and removed[t.receipts] > 0

    # The unfetched document reaches its recipient byte for byte; so does the one held
    # behind it; the acknowledged and aged ones are archived.
    status, body, _ = await fetch(api, QUIET, quiet_entry["message_id"])
    assert status == 200
    assert_forwarded(unfetched["data"], body, sha256=quiet_entry["sha256"])
    status, body, _ = await fetch(api, BUSY, behind_entry["message_id"])
    assert status == 200
    assert_forwarded(behind["data"], body, sha256=behind_entry["sha256"])
    status, _, problem = await fetch(api, BUSY, acked[0])
    assert status == 410 and problem["code"] == "archived", problem

    # A second prune removes nothing more (the unfetched entry holds its partition).
    await archive_everything(runtime)
    again = await runtime.pruner.prune()
    assert t.mailbox not in again

    report = await verify_audit(log, t)
    assert report.breaks == [] and sum(report.archived.values()) > 0
    # The same from the CLI, on the same log.
    code, out, err = await cli(api_settings_env, "audit", "verify", "--json")
    assert code == 0, out + err
    assert json.loads(out)["archived"] > 0
    code, out, err = await cli(api_settings_env, "trace", "000.00.00.H35,2026/11/24,0/UBND-VP")
    assert code == 1 and "archived" in out + err, out + err
    if space_before is not None:
        after = await log.space()
        print(f"[{backend}] pages {space_before} -> {after}")
        assert after["auto_vacuum"] == 2
        assert after["pages"] < space_before["pages"] - 100
        assert after["free_pages"] < 50

    # A mailbox view rebuilt from the pruned log serves what is held.
    await api.client.close()
    for view in ("mailbox.sqlite", "documents.sqlite"):
        (Path(api_settings_env["DOCBROKER_DATA_DIR"]) / view).unlink()
    settings = load_settings(None, api_settings_env)
    again_api = AgencyClient(TestClient(TestServer(build_app(Runtime.build(settings)))))
    # Starting a runtime does its start-up work on the loop, as the api fixture does
    # outside this test's blocking check; the check resumes once it serves.
    loop = asyncio.get_running_loop()
    loop.slow_callback_duration = 5.0
    await again_api.client.start_server()
    loop.slow_callback_duration = 0.25
    try:
        (entry,) = await wait_for_mailbox(again_api, QUIET)
        assert entry["message_id"] == quiet_entry["message_id"]
        status, body, _ = await fetch(again_api, QUIET, entry["message_id"])
        assert status == 200
        assert_forwarded(unfetched["data"], body, sha256=quiet_entry["sha256"])
        assert (await fetch(again_api, BUSY, acked[0]))[0] == 404
        # The documents view rebuilt too: a document whose events were pruned is
        # `archived` to its sender (the dedup index remembers it); one never sent is not found.
        pruned = "/v1/documents/" + quote("000.00.00.H35,2026/11/24,0/UBND-VP", safe="")
        resp = await again_api.get(pruned, headers=await again_api.auth(SENDER))
        assert resp.status == 410 and (await resp.json())["code"] == "archived"
        unknown = "/v1/documents/" + quote("000.00.00.H35,2026/11/24,999/UBND-VP", safe="")
        assert (await again_api.get(unknown, headers=await again_api.auth(SENDER))).status == 404
    finally:
        await again_api.client.close()


@pytest.fixture
async def timed_client(api_settings_env: dict[str, str]) -> AsyncIterator[TestClient]:
    """A runtime with retention enabled (the default), pruning every 0.2 s."""
    env = {**api_settings_env, "DOCBROKER_RETENTION_ENABLED": "true"}
    env["DOCBROKER_RETENTION_INTERVAL"] = "0.2"
    client = TestClient(TestServer(build_app(Runtime.build(load_settings(None, env)))))
    await client.start_server()
    yield client
    await client.close()


def prune_count(metrics: list[str]) -> float:
    return next(
        (
            float(m.split()[-1])
            for m in metrics
            if m.startswith("docbroker_log_prune_seconds_count")
        ),
        0.0,
    )


async def test_the_daemon_prunes_on_its_own_every_interval(timed_client: TestClient) -> None:
    """The runtime prunes at start and then every `retention.interval` seconds, and
    says so in its metrics."""
    metrics: list[str] = []
    for _ in range(100):
        metrics = (await (await timed_client.get("/metrics")).text()).splitlines()
        if prune_count(metrics) >= 3:
            break
        await asyncio.sleep(0.1)
    assert prune_count(metrics) >= 3
    assert any(m.startswith("docbroker_mailbox_oldest_unacknowledged_seconds ") for m in metrics)


@pytest.fixture
async def unarchived_api(api_settings_env: dict[str, str]) -> AsyncIterator[AgencyClient]:
    """Retention that does not wait for an archive (`require_archive = false`)."""
    env = {**api_settings_env, "DOCBROKER_RETENTION_REQUIRE_ARCHIVE": "false"}
    client = TestClient(TestServer(build_app(Runtime.build(load_settings(None, env)))))
    await client.start_server()
    yield AgencyClient(client)
    await client.close()


async def test_without_require_archive_aged_records_go_unarchived(
    unarchived_api: AgencyClient,
) -> None:
    """No archive mark at all: what is delivered, acknowledged and aged goes anyway, and
    the unacknowledged status 01 behind it stays."""
    api, runtime = unarchived_api, unarchived_api.runtime
    t = runtime.topics
    await send(api, BUSY, 1)
    (entry,) = await wait_for_mailbox(api, BUSY)
    assert (await fetch(api, BUSY, entry["message_id"]))[0] == 200
    await ack(api, BUSY, entry["message_id"])
    (status_entry,) = await wait_for_mailbox(api, SENDER)
    await asyncio.sleep(AGE_S + 0.5)
    removed = await runtime.pruner.prune()
    assert removed[t.mailbox] >= 1 and removed[t.inbound] >= 1
    assert (await fetch(api, BUSY, entry["message_id"]))[2]["code"] == "archived"
    assert (await fetch(api, SENDER, status_entry["message_id"]))[0] == 200
    report = await verify_audit(runtime.log, t)
    assert report.breaks == []
