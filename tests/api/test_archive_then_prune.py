"""The archive and retention together, as an operator runs them (issue 14): a real
`docbroker archive export`, then the pruner; what left the log is in the archive byte
for byte, what is still owed stays in the log, and the audit trail verifies. On the
embedded backend and the suite's real Kafka."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from broker.views.audit import verify_audit
from tests.api.archive_kit import (
    RECIPIENT,
    ack,
    doc_id,
    events_settled,
    fetch,
    mailbox,
    now_iso,
    run,
    submit,
)
from tests.api.archive_kit import marks as archive_marks
from tests.api.conftest import AgencyClient

pytestmark = [pytest.mark.usefixtures("no_blocking_loop"), pytest.mark.slow]

AGE_S = 1.0


@pytest.fixture
def api_settings_env(api_settings_env: dict[str, str]) -> dict[str, str]:
    """One partition per topic, every age AGE_S seconds (the events too), an archive
    required (the default); prunes called by the test."""
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


async def test_what_is_pruned_is_in_the_archive_and_what_is_owed_stays(
    api: AgencyClient, api_settings_env: dict[str, str], tmp_path: Path, backend: str
) -> None:
    env, runtime = api_settings_env, api.runtime
    t = runtime.topics
    # Documents 0-5 fetched and acknowledged, 6 never fetched, 7 acknowledged behind it.
    await submit(api, range(8))
    entries = await mailbox(api, 8)
    fetched = {n: await fetch(api, entries[doc_id(n)]) for n in (*range(6), 7)}
    for n in (*range(6), 7):
        await ack(api, entries[doc_id(n)])
    await events_settled(api, 7)
    await asyncio.sleep(AGE_S + 0.5)

    folder = tmp_path / "archive"
    exported = await run(env, "archive", "export", "--until", now_iso(), str(folder), "--json")
    assert exported.exit_code == 0, exported.output
    await archive_marks(api, 3)  # mailbox, receipts, events: one partition each
    removed = await runtime.pruner.prune()
    assert removed.get(t.mailbox, 0) >= 6 and removed.get(t.events, 0) > 0, removed

    # Pruned: 410 archived from the log, and the archive has it byte for byte.
    gone = await api.get(f"/v1/mailboxes/{RECIPIENT}/envelopes/{entries[doc_id(0)]['message_id']}")
    assert gone.status == 410 and (await gone.json())["code"] == "archived"
    out = tmp_path / "out"
    extracted = await run(env, "archive", "extract", str(folder), doc_id(0), str(out))
    assert extracted.exit_code == 0, extracted.output
    trail = json.loads((out / "trail.json").read_text())
    (envelope,) = [r for r in trail if r["topic"] == "mailbox"]
    assert await asyncio.to_thread(Path(envelope["path"]).read_bytes) == fetched[0]
    assert {"routed", "acknowledged"} <= {r.get("kind") for r in trail}
    # Owed: the unfetched one, and the acknowledged one behind it, from the log.
    assert await fetch(api, entries[doc_id(6)])
    assert await fetch(api, entries[doc_id(7)]) == fetched[7]
    # The archive verifies against the log; the pruned audit trail verifies.
    verified = await run(env, "archive", "verify", str(folder), "--against-log")
    assert verified.exit_code == 0, verified.output
    report = await verify_audit(runtime.log, t)
    assert report.breaks == [] and sum(report.archived.values()) > 0
    print(f"\n[{backend}] removed {removed}; archive {sorted(p.name for p in folder.iterdir())}")
