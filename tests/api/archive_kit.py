"""Real documents through an in-process docbroker, and `docbroker archive …` run on
its log (in process with CliRunner, or as a process that a test kills)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from broker.cli import cli
from broker.core.archived import latest_marks
from broker.views.audit import read_all
from tests.api.conftest import AgencyClient
from tests.conftest import eventually
from tests.edxml_samples import document

XML = {"Content-Type": "application/xml"}
SENDER = "000.00.00.H35"
RECIPIENT = "000.00.01.H35"
CRASH = Path(__file__).with_name("archive_crash.py")


def doc_id(n: int) -> str:
    return f"{SENDER},2026/12/01,{n}/ARCHIVE"


async def submit(api: AgencyClient, numbers: range) -> None:
    for n in numbers:
        data = document(recipients=(RECIPIENT,), document_id=doc_id(n))
        assert (await api.post("/v1/envelopes", data=data, headers=XML)).status == 202


async def mailbox(api: AgencyClient, count: int) -> dict[str, dict]:
    """DocumentId -> entry of the recipient's mailbox (all states), once `count` are there."""
    url = f"/v1/mailboxes/{RECIPIENT}/envelopes"
    for _ in range(1200):
        found: dict[str, dict] = {}
        after = "0"
        while True:
            params = {"state": "all", "limit": "500", "after": after}
            body = await (await api.get(url, params=params)).json()
            found.update({e["document_id"]: e for e in body["envelopes"]})
            if not body["envelopes"] or not body.get("next_after"):
                break
            after = str(body["next_after"])
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} entries in {RECIPIENT}'s mailbox")


async def fetch(api: AgencyClient, entry: dict) -> bytes:
    resp = await api.get(f"/v1/mailboxes/{RECIPIENT}/envelopes/{entry['message_id']}")
    assert resp.status == 200
    return await resp.read()


async def ack(api: AgencyClient, entry: dict) -> None:
    url = f"/v1/mailboxes/{RECIPIENT}/envelopes/{entry['message_id']}/ack"
    assert (await api.post(url)).status == 200


async def events_settled(api: AgencyClient, acks: int) -> None:
    """Until the pipeline has turned `acks` acknowledgements into events."""
    rt = api.runtime
    for _ in range(600):
        events = [json.loads(r.value) for r in await read_all(rt.log, rt.topics.events) if r.value]
        if sum(e["type"] == "acknowledged" for e in events) >= acks:
            await asyncio.sleep(0.3)  # the status 01 and its events, in the same transaction
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {acks} acknowledged events")


async def marks(api: AgencyClient, wanted: int = 1) -> dict[str, Any]:
    """The latest archive marks, once at least `wanted` partitions have one: on Kafka
    the marks of one export are one transaction, whose commit markers reach the
    partitions a moment after the producer's commit returns."""
    rt = api.runtime
    found: dict[str, Any] = {}

    async def read() -> bool:
        found.clear()
        found.update(latest_marks(await read_all(rt.log, rt.topics.archived)))
        return len(found) >= wanted

    await eventually(read, 10)
    return found


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


async def run(env: dict[str, str], *args: str) -> Result:
    """`docbroker ARGS` in process (in a thread: the CLI runs its own event loop)."""
    return await asyncio.to_thread(
        CliRunner().invoke, cli, list(args), env=env, catch_exceptions=False
    )


def killed_at(env: dict[str, str], step: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`docbroker ARGS` as a process killed with SIGKILL after the archive step `step`."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, str(CRASH), step, *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def files_of(directory: Path) -> dict[str, bytes]:
    """Name -> bytes of the folder's files, but the export's lock file."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != ".export.lock"}
