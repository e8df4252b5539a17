"""docbroker's AxisClient against the simulator: what each answer means to it
(tests/interop shows that it sends what the real SDK sends)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from adapters.national_axis.client import AxisClient
from adapters.national_axis.protocol import AxisError, Failure
from adapters.national_axis.simulator import SimulatorConfig, SystemConfig, build_simulator_app
from broker.directory.model import Agency
from tests.edxml_samples import document, status

SECRETS = {"vdxp-h35": "secret-of-h35", "vdxp-h36": "secret-of-h36"}
H35 = (Agency("H35.S01", "Văn phòng UBND tỉnh", "000.00.01.H35"),)
H36 = (
    Agency("H36", "UBND tỉnh", "000.00.00.H36"),
    Agency("H36.S05", "Sở Tài chính", "000.00.05.H36", parent="H36", email="stc@h36.vn"),
)
DOC = "000.00.01.H35,2026/12/01,3/VP"

Clients = Callable[..., AxisClient]


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    config = SimulatorConfig(
        (
            SystemConfig("vdxp-h35", SECRETS["vdxp-h35"], H35, organ_id="000.99.99.H35"),
            SystemConfig("vdxp-h36", SECRETS["vdxp-h36"], H36),
        )
    )
    server = TestServer(build_simulator_app(config), host="127.0.0.1")
    await server.start_server()
    made: list[AxisClient] = []

    def make(system: str, secret: str | None = None, **options: Any) -> AxisClient:
        url = str(server.make_url("")).rstrip("/")
        client = AxisClient(url, system, secret or SECRETS[system], **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()
    await server.close()


async def test_a_document_goes_across_and_the_sender_sees_it_taken(clients: Clients) -> None:
    a, b = clients("vdxp-h35"), clients("vdxp-h36")
    package = document("000.00.01.H35", ["000.00.05.H36"], DOC)
    answer = await a.send_edoc(package, "000.00.01.H35", ["000.00.05.H36"], "edoc")
    sent_id = answer.fields["DocId"]
    assert sent_id and not answer.already_there
    assert await b.count("edoc") == 1 and await b.count("status") == 0
    [item] = await b.received("edoc")
    assert await b.get_edoc(item["docId"]) == package
    await b.update_status(item["docId"], "done")
    assert await b.received("edoc") == []
    [copy] = await a.sent()
    assert (copy["senderDocId"], copy["toCode"], copy["sendStatus"]) == (
        sent_id,
        "000.00.05.H36",
        "done",
    )
    answer = status("000.00.05.H36", "000.00.01.H35", DOC, "05")
    await b.send_edoc(answer, "000.00.05.H36", ["000.00.01.H35"], "status")
    assert [i["from"] for i in await a.received("status")] == ["000.00.05.H36"]
    copy = next(c for c in await a.sent() if c["messageType"] == "edoc")
    assert copy["receiveStatus"] == "05"


async def test_a_resend_is_already_there_with_the_first_doc_id(clients: Clients) -> None:
    a = clients("vdxp-h35")
    package = document("000.00.01.H35", ["H36"], DOC)
    first = await a.send_edoc(package, "000.00.01.H35", ["H36"], "edoc")
    again = await a.send_edoc(package, "000.00.01.H35", ["H36"], "edoc")
    assert again.already_there and again.fields["DocId"] == first.fields["DocId"]


async def test_refusals_and_outages_are_told_apart(clients: Clients) -> None:
    """A wrong secret is unavailable (the axis refuses our credentials: wait, spend no
    budget); a package the axis refuses is a refusal with its ErrorCode."""
    with pytest.raises(AxisError) as caught:
        await clients("vdxp-h35", "not-the-secret").received("edoc")
    assert (caught.value.code, caught.value.failure) == ("Unauthorized", Failure.UNAVAILABLE)
    a = clients("vdxp-h35")
    for sender, to, code in (
        ("000.00.05.H36", ["H35.S01"], "SenderNotServed"),
        ("000.00.01.H35", ["000.00.00.G99"], "AgencyNotFound"),
    ):
        with pytest.raises(AxisError) as caught:
            await a.send_edoc(b"<edXML/>", sender, to, "edoc")
        assert (caught.value.code, caught.value.failure) == (code, Failure.REFUSED)
    with pytest.raises(AxisError, match="NotFound"):
        await a.get_edoc("no-such-doc")


async def test_the_directory_lists(clients: Clients) -> None:
    a = clients("vdxp-h35", clock=lambda: datetime(2026, 1, 2, 3, 4, 5))
    by102 = {x["id"]: x for x in await a.agencies(qd20=False)}
    qd20 = {x["id"]: x for x in await a.agencies(qd20=True)}
    assert (by102["H36.S05"]["code"], by102["H36.S05"]["pid"]) == ("000.00.05.H36", "H36")
    assert (qd20["H36.S05"]["code"], qd20["H36.S05"]["code102"]) == ("H36.S05", "000.00.05.H36")
    units = {x["id"]: x for x in await a.synchronize_units()}
    assert units["H36.S05"]["mail"] == "stc@h36.vn" and units["H36.S05"]["centerCode"] == "vdxp-h36"
