"""`broker.service.replay.replay_live`, as the console calls it on a running daemon: a
document to an agency not in the directory, replayed once the agency is added; the
event loop is never blocked (the checks run in threads)."""

from __future__ import annotations

import asyncio

import pytest

from broker.directory.model import Agency
from broker.service.replay import ALREADY, REPLAYED, STILL_REFUSED, WOULD, replay_live
from broker.state.directory import put_agencies
from broker.views.audit import read_all
from broker.views.dead_letters import dead_letters
from tests.api.conftest import AgencyClient
from tests.api.test_envelope_flow import wait_for_mailbox
from tests.edxml_samples import document

pytestmark = pytest.mark.usefixtures("no_blocking_loop")

XML = {"Content-Type": "application/xml"}
NEW_CODE, NEW_102 = "H35.S77", "000.00.77.H35"


async def the_dead_letter(api: AgencyClient, timeout: float = 20) -> str:
    runtime = api.runtime
    async with asyncio.timeout(timeout):
        while True:
            found = dead_letters(await read_all(runtime.log, runtime.topics.rejected))
            if found:
                return found[0][0].message_id
            await asyncio.sleep(0.2)


async def test_a_refused_document_replayed_from_the_console(api: AgencyClient) -> None:
    runtime = api.runtime
    resp = await api.post("/v1/envelopes", data=document(recipients=(NEW_102,)), headers=XML)
    assert resp.status == 202
    mid = await the_dead_letter(api)
    (before,) = await replay_live(runtime, [mid], dry_run=True, actor="console:admin")
    assert before.outcome == STILL_REFUSED
    agency = Agency(NEW_CODE, "Sở Mới", code102=NEW_102)
    await put_agencies(runtime.log, runtime.topics.directory, [agency], "test")
    async with asyncio.timeout(20):  # the daemon follows the directory change
        while True:
            if runtime.directory.current.find(NEW_102) is not None:
                break
            await asyncio.sleep(0.1)
    (would,) = await replay_live(runtime, [mid], dry_run=True, actor="console:admin")
    assert would.outcome == WOULD and would.routes == ((NEW_CODE, "mailbox"),)
    (done,) = await replay_live(runtime, [mid], dry_run=False, actor="console:admin")
    assert done.outcome == REPLAYED and done.replayed_as
    (entry,) = await wait_for_mailbox(api, NEW_CODE)
    assert entry["message_id"] == done.replayed_as
    (again,) = await replay_live(runtime, [mid], dry_run=False, actor="console:admin")
    assert again.outcome == ALREADY and again.replayed_as == done.replayed_as
