"""The national axis simulator speaks the SDK protocol: signed calls, documents kept
per serving system, ExistDoc on resends, fault injection, state that survives a restart."""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.national_axis.simulator import (
    SimulatorConfig,
    SimulatorConfigError,
    SystemConfig,
    build_simulator_app,
    load_simulator_config,
    main,
    serve_simulator,
)
from broker.auth import sign_sdk_headers
from broker.directory.io import to_toml
from broker.directory.model import Agency
from tests.sdk_client import send_edoc_request

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "<?xml version='1.0' encoding='UTF-8'?><edXML><Body>văn bản</Body></edXML>".encode()
SECRET_A = "secret-of-h35"
SECRET_B = "secret-of-h36"

H35 = (
    Agency("H35", "Ủy ban nhân dân tỉnh Lai Châu", "000.00.00.H35", level="tỉnh"),
    Agency("H35.S01", "Văn phòng UBND tỉnh", "000.00.01.H35", parent="H35", level="sở"),
    # known to H35's directory but served by nobody here
    Agency("G09", "Bộ Tài chính", "000.00.00.G09", level="bộ", local=False),
)
H36 = (
    Agency(
        "H36",
        "Ủy ban nhân dân tỉnh Điện Biên",
        "000.00.00.H36",
        level="tỉnh",
        email="ubnd@dienbien.gov.vn",
    ),
    Agency("H36.S05", "Sở Tài chính", "000.00.05.H36", parent="H36", level="sở"),
)


def write_config(tmp_path: Path, *, state: bool = False, extra: str = "") -> Path:
    """Two systems, each with its directory file, as an operator would write them."""
    (tmp_path / "dir").mkdir(exist_ok=True)
    (tmp_path / "dir" / "h35.toml").write_text(to_toml(H35), encoding="utf-8")
    (tmp_path / "dir" / "h36.toml").write_text(to_toml(H36), encoding="utf-8")
    text = (
        ('state_file = "state/axis.sqlite"\n' if state else "")
        + ("" if "seed" in extra else "seed = 7\n")
        + extra
        + f'[[system]]\nid = "vdxp-h35"\nsecret = "{SECRET_A}"\ndirectory = "dir/h35.toml"\n'
        + f'[[system]]\nid = "vdxp-h36"\nsecret = "{SECRET_B}"\ndirectory = "dir/h36.toml"\n'
    )
    path = tmp_path / "sim.toml"
    path.write_text(text, encoding="utf-8")
    return path


def direct_config(seed: int | None = 7) -> SimulatorConfig:
    return SimulatorConfig(
        (SystemConfig("vdxp-h35", SECRET_A, H35), SystemConfig("vdxp-h36", SECRET_B, H36)),
        seed=seed,
    )


@dataclass
class Caller:
    """An SDK client of one system, signing as broker.auth.sign_sdk_headers does."""

    client: TestClient
    system_id: str
    secret: str

    def headers(self, **params: str) -> dict[str, str]:
        values = {
            "systemid": self.system_id,
            "timestamp": str(time.time_ns() // 1_000_000),
            "nonce": uuid.uuid4().hex,
            **params,
        }
        return sign_sdk_headers(values, self.secret)

    async def call(
        self, operation: str, *, method: str = "POST", data: Any = None, **params: str
    ) -> tuple[int, dict[str, Any]]:
        resp = await self.client.request(
            method, f"/{operation}", data=data, headers=self.headers(**params)
        )
        async with resp:
            return resp.status, await resp.json()

    async def send(
        self,
        package: bytes,
        to: list[str],
        *,
        sender: str = "000.00.01.H35",
        messagetype: str = "edoc",
        hash_file: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        form, params = send_edoc_request(package, sender, to, messagetype, hash_file)
        return await self.call("sendEdoc", data=form, **params)

    async def received(self, messagetype: str = "edoc") -> list[dict[str, Any]]:
        status, body = await self.call("getReceivedEdocList", messagetype=messagetype)
        assert (status, body["status"]) == (200, "OK"), body
        assert body["total"] == len(body["data"])
        return body["data"]


Clients = Callable[[SimulatorConfig], Awaitable[tuple[Caller, Caller]]]


@pytest.fixture
async def start() -> AsyncIterator[Clients]:
    """Start simulators (each a TestServer) and give the two systems' callers."""
    opened: list[TestClient] = []

    async def factory(config: SimulatorConfig) -> tuple[Caller, Caller]:
        client = TestClient(TestServer(build_simulator_app(config)))
        await client.start_server()
        opened.append(client)
        return Caller(client, "vdxp-h35", SECRET_A), Caller(client, "vdxp-h36", SECRET_B)

    yield factory
    for client in opened:
        await client.close()


@pytest.fixture
async def pair(start: Clients) -> tuple[Caller, Caller]:
    return await start(direct_config())


async def sim_state(caller: Caller) -> dict[str, Any]:
    async with await caller.client.get("/_sim/state") as resp:
        assert resp.status == 200
        return await resp.json()


# -- documents -------------------------------------------------------------------------


async def test_a_document_reaches_the_serving_system_only(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    status, body = await a.send(PACKAGE, ["000.00.05.H36"])
    assert status == 200 and body["status"] == "OK" and body["ErrorCode"] == "0", body
    doc_id = body["docId"]
    uuid.UUID(doc_id)

    assert await a.received() == []
    [entry] = await b.received()
    assert entry | {"created_time": "?"} == {
        "docId": doc_id,
        "from": "000.00.01.H35",
        "to": "000.00.05.H36",
        "messagetype": "edoc",
        "serviceType": "eDoc",
        "created_time": "?",
        "status": "initial",
    }
    assert re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d", entry["created_time"])
    assert (await b.call("countReceiveEdoc"))[1]["total"] == 1

    status, body = await b.call("getEdoc", docId=doc_id)
    assert status == 200 and body["status"] == "OK"
    assert base64.b64decode(body["data"]) == PACKAGE
    resp = await b.client.post("/downloadEdoc", headers=b.headers(docId=doc_id))
    assert resp.status == 200 and resp.content_type == "application/xml"
    assert await resp.read() == PACKAGE

    # the sender cannot fetch it, nor acknowledge it
    status, body = await a.call("getEdoc", docId=doc_id)
    assert (status, body["status"], body["ErrorCode"]) == (200, "FAIL", "NotFound")
    assert (await a.call("updateStatus", docId=doc_id, status="done"))[1]["ErrorCode"] == "NotFound"

    status, body = await b.call("updateStatus", docId=doc_id, status="fail")
    assert status == 200 and body["status"] == "OK" and body["fails"] == 1
    assert [e["docId"] for e in await b.received()] == [doc_id]
    assert (await sim_state(a))["fails"] == {doc_id: 1}

    status, body = await b.call("updateStatus", docId=doc_id, status="done")
    assert status == 200 and body["status_doc"] == "done"
    assert await b.received() == []
    assert (await b.call("countReceiveEdoc"))[1]["total"] == 0
    # still fetchable once taken
    assert (await b.call("getEdoc", docId=doc_id))[1]["status"] == "OK"

    status, body = await a.call("getSentEdocList")
    assert status == 200 and body["total"] == 1
    [sent] = body["data"]
    assert {k: sent[k] for k in ("docId", "from", "to", "messagetype", "status")} == {
        "docId": doc_id,
        "from": "000.00.01.H35",
        "to": "000.00.05.H36",
        "messagetype": "edoc",
        "status": "done",
    }
    assert (await b.call("getSentEdocList"))[1]["data"] == []


async def test_lists_are_oldest_first_and_sent_newest_first(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    ids = [(await a.send(PACKAGE + bytes([i]), ["H36"]))[1]["docId"] for i in range(3)]
    assert [e["docId"] for e in await b.received()] == ids
    assert [e["docId"] for e in (await a.call("getSentEdocList"))[1]["data"]] == ids[::-1]
    # GET works as well as POST
    status, body = await b.call("getReceivedEdocList", method="GET", messagetype="edoc")
    assert status == 200 and body["total"] == 3


async def test_status_messages_are_listed_apart(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    doc = (await a.send(PACKAGE, ["000.00.05.H36"]))[1]["docId"]
    status = (await b.send(b"<status/>", ["H35.S01"], sender="H36.S05", messagetype="status"))[1]
    assert [e["docId"] for e in await b.received("edoc")] == [doc]
    assert await b.received("status") == []
    [listed] = await a.received("status")
    assert (listed["docId"], listed["messagetype"], listed["to"]) == (
        status["docId"],
        "status",
        "H35.S01",
    )
    assert await a.received("edoc") == []
    assert (await a.call("countReceiveStatus"))[1]["total"] == 1
    assert (await a.call("countReceiveEdoc"))[1]["total"] == 0


async def test_resending_the_same_bytes_is_exist_doc(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    assert (await a.send(PACKAGE, ["000.00.05.H36"]))[1]["status"] == "OK"
    for to in (["000.00.05.H36"], ["H36.S05"]):  # either code form names the recipient
        status, body = await a.send(PACKAGE, to)
        assert status == 200 and body["status"] == "FAIL" and body["ErrorCode"] == "ExistDoc"
    assert len(await b.received()) == 1
    # the same bytes to another recipient are a new delivery
    assert (await a.send(PACKAGE, ["000.00.00.H36"]))[1]["status"] == "OK"
    assert len(await b.received()) == 2
    assert (await sim_state(a))["entries_total"] == 2


async def test_recipients_of_one_system_share_a_doc_id(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    doc_id = (await a.send(PACKAGE, ["000.00.00.H36", "H36.S05"]))[1]["docId"]
    listed = await b.received()
    assert [(e["docId"], e["to"]) for e in listed] == [
        (doc_id, "000.00.00.H36"),
        (doc_id, "H36.S05"),
    ]
    assert base64.b64decode((await b.call("getEdoc", docId=doc_id))[1]["data"]) == PACKAGE
    assert (await b.call("updateStatus", docId=doc_id, status="done"))[1]["status"] == "OK"
    assert await b.received() == []


async def test_unknown_recipients_store_nothing(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    for to in (["000.00.09.H99"], ["000.00.05.H36", "000.00.00.G09"]):  # G09 is not local
        status, body = await a.send(PACKAGE, to)
        assert status == 200 and body["ErrorCode"] == "AgencyNotFound", body
        assert body["status"] == "FAIL"
    assert await b.received() == []
    assert (await sim_state(a))["entries_total"] == 0


async def test_a_wrong_hash_file_is_refused(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    status, body = await a.send(PACKAGE, ["H36"], hash_file="0" * 64)
    assert (status, body["ErrorCode"]) == (400, "InvalidHash")
    # the unprefixed header is read too
    form = aiohttp.FormData()
    form.add_field("file_doc", PACKAGE, filename="edoc.edxml")
    headers = a.headers(**{"from": "H35", "to": '["H36"]', "messagetype": "edoc"})
    async with await a.client.post(
        "/sendEdoc", data=form, headers={**headers, "hash-file": "ab" * 32}
    ) as resp:
        assert resp.status == 400 and (await resp.json())["ErrorCode"] == "InvalidHash"
    assert await b.received() == []


async def test_bad_parameters_are_invalid(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    doc_id = (await a.send(PACKAGE, ["H36"]))[1]["docId"]
    status, body = await b.call("updateStatus", docId=doc_id, status="read")
    assert (status, body["ErrorCode"]) == (400, "InvalidParameter")
    status, body = await b.call("updateStatus", docId=str(uuid.uuid4()), status="done")
    assert (status, body["status"], body["ErrorCode"]) == (200, "FAIL", "NotFound")
    status, body = await a.call("sendEdoc", **{"from": "H35", "to": "H36"})
    assert (status, body["ErrorCode"]) == (400, "InvalidParameter")
    status, body = await a.call("noSuchThing")
    assert (status, body["status"], body["ErrorCode"]) == (404, "FAIL", "UnknownOperation")


# -- authentication ----------------------------------------------------------------------


def _refused_headers(case: str, a: Caller) -> dict[str, str]:
    now = time.time_ns() // 1_000_000
    if case == "wrong secret":
        return Caller(a.client, a.system_id, "not-the-secret").headers()
    if case == "unknown system":
        return Caller(a.client, "vdxp-h99", SECRET_A).headers()
    if case == "unsigned":
        return {"XroadVnpt-systemid": a.system_id}
    if case == "system id not signed":
        return sign_sdk_headers({"timestamp": str(now)}, SECRET_A)
    if case == "stale timestamp":
        stale = {"systemid": a.system_id, "timestamp": str(now - 400_000), "nonce": "n1"}
        return sign_sdk_headers(stale, SECRET_A)
    if case == "altered header":
        return {**a.headers(messagetype="edoc"), "XroadVnpt-messagetype": "status"}
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "wrong secret",
        "unknown system",
        "unsigned",
        "system id not signed",
        "stale timestamp",
        "altered header",
    ],
)
async def test_bad_credentials_are_refused(case: str, pair: tuple[Caller, Caller]) -> None:
    a, _ = pair
    async with await a.client.post(
        "/getReceivedEdocList", headers=_refused_headers(case, a)
    ) as resp:
        body = await resp.json()
    assert resp.status == 401
    assert body["status"] == "FAIL" and body["ErrorCode"] == "Unauthorized" and body["ErrorDesc"]
    assert (await sim_state(a))["refused"] == 1


async def test_a_replayed_nonce_is_refused(pair: tuple[Caller, Caller]) -> None:
    a, _ = pair
    headers = a.headers(messagetype="edoc")
    async with await a.client.post("/getReceivedEdocList", headers=headers) as resp:
        assert resp.status == 200
    async with await a.client.post("/getReceivedEdocList", headers=headers) as resp:
        body = await resp.json()
        assert resp.status == 401 and body["ErrorCode"] == "Unauthorized"
        assert "nonce" in body["ErrorDesc"]


# -- the directory ---------------------------------------------------------------------


async def test_agencies_in_both_code_forms(pair: tuple[Caller, Caller]) -> None:
    a, _ = pair
    status, body = await a.call("getAgenciesList")
    assert status == 200 and body["status"] == "OK"
    by_code = {x["code"]: x for x in body["data"]}
    assert sorted(by_code) == ["000.00.00.H35", "000.00.00.H36", "000.00.01.H35", "000.00.05.H36"]
    assert by_code["000.00.05.H36"]["pid"] == "000.00.00.H36"
    assert by_code["000.00.00.H36"] == {
        "code": "000.00.00.H36",
        "name": "Ủy ban nhân dân tỉnh Điện Biên",
        "pid": "",
        "level": "tỉnh",
        "mail": "ubnd@dienbien.gov.vn",
        "phone": "",
        "address": "",
        "website": "",
        "status": "active",
    }
    status, body = await a.call("getAgenciesListQD20")
    assert status == 200
    assert {x["code"]: x["pid"] for x in body["data"]} == {
        "H35": "",
        "H35.S01": "H35",
        "H36": "",
        "H36.S05": "H36",
    }
    async with await a.client.post("/getAgenciesList") as resp:
        assert resp.status == 401


# -- fault injection ---------------------------------------------------------------------


async def set_faults(caller: Caller, **faults: Any) -> dict[str, Any]:
    async with await caller.client.post("/_sim/faults", json=faults) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return body


async def test_injected_failures(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    await set_faults(a, fail_rate=1, fail_status=503, fail_code="Busy", operations=["sendEdoc"])
    status, body = await a.send(PACKAGE, ["H36"])
    assert (status, body["status"], body["ErrorCode"]) == (503, "FAIL", "Busy")
    assert await b.received() == []  # other operations are untouched
    async with await a.client.delete("/_sim/faults") as resp:
        assert resp.status == 200
    assert (await a.send(PACKAGE, ["H36"]))[1]["status"] == "OK"
    state = await sim_state(a)
    assert state["requests"]["sendEdoc"] == 2 and state["entries"]["edoc"]["initial"] == 1


async def test_injected_drops_and_lost_answers(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    await set_faults(a, drop_rate=1.0)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await a.call("getReceivedEdocList")
    # phase "after": the document is kept but the answer is lost; the retry is ExistDoc
    await set_faults(a, drop_rate=1.0, phase="after", operations=["sendEdoc"])
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await a.send(PACKAGE, ["H36"])
    await set_faults(a)
    assert (await a.send(PACKAGE, ["H36"]))[1]["ErrorCode"] == "ExistDoc"
    assert len(await b.received()) == 1


async def test_injected_delay(pair: tuple[Caller, Caller]) -> None:
    a, _ = pair
    await set_faults(a, delay_seconds=0.3, operations=["countReceiveEdoc"])
    started = time.monotonic()
    assert (await a.call("countReceiveEdoc"))[0] == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert (await a.call("countReceiveStatus"))[0] == 200
    assert time.monotonic() - started < 0.3


async def test_fault_rates_follow_the_seed(start: Clients) -> None:
    async def outcomes() -> list[int]:
        a, _ = await start(direct_config(seed=3))
        await set_faults(a, fail_rate=0.5)
        return [(await a.call("countReceiveEdoc"))[0] for _ in range(12)]

    first, second = await outcomes(), await outcomes()
    assert first == second and {200, 500} == set(first)


@pytest.mark.parametrize(
    "faults",
    [{"fail_rate": 2}, {"operations": ["sendDoc"]}, {"speed": 1}, {"phase": "during"}, []],
)
async def test_bad_fault_settings_are_refused(faults: object, pair: tuple[Caller, Caller]) -> None:
    a, _ = pair
    async with await a.client.post("/_sim/faults", json=faults) as resp:
        assert resp.status == 400 and (await resp.json())["error"]


# -- state across restarts, configuration, serving ---------------------------------------


async def test_documents_survive_a_restart(tmp_path: Path, start: Clients) -> None:
    config = load_simulator_config(write_config(tmp_path, state=True))
    assert config.state_file is not None and config.state_file.is_absolute()
    assert config.state_file.parts[-3:] == (tmp_path.name, "state", "axis.sqlite")
    a, b = await start(config)
    kept = (await a.send(PACKAGE, ["H36.S05"]))[1]["docId"]
    taken = (await a.send(PACKAGE + b"2", ["H36.S05"]))[1]["docId"]
    await b.call("updateStatus", docId=taken, status="done")
    await a.client.close()

    a, b = await start(load_simulator_config(tmp_path / "sim.toml"))
    assert [e["docId"] for e in await b.received()] == [kept]
    assert base64.b64decode((await b.call("getEdoc", docId=kept))[1]["data"]) == PACKAGE
    assert (await a.send(PACKAGE, ["H36.S05"]))[1]["ErrorCode"] == "ExistDoc"
    assert (await sim_state(a))["entries"]["edoc"] == {"initial": 1, "done": 1}


def test_the_config_file_is_read(tmp_path: Path) -> None:
    config = load_simulator_config(write_config(tmp_path))
    assert config.state_file is None and config.seed == 7
    assert [s.id for s in config.systems] == ["vdxp-h35", "vdxp-h36"]
    assert [a.code for a in config.systems[0].served] == ["H35", "H35.S01"]
    example = load_simulator_config(ROOT / "config" / "axis-simulator.example.toml")
    assert example.systems and example.systems[0].served


@pytest.mark.parametrize(
    ("extra", "system", "words"),
    [
        ("colour = 1\n", "", "colour"),
        ("seed = 'x'\n", "", "seed"),
        ("", '[[system]]\nid = "x"\ndirectory = "dir/h35.toml"\n', "system[2].secret"),
        ("", '[[system]]\nid = "x"\nsecret = "s"\ndirectory = "dir/none.toml"\n', "none.toml"),
        ("", '[[system]]\nid = "vdxp-h35"\nsecret = "s"\ndirectory = "dir/h36.toml"\n', "both"),
        ("", '[[system]]\nid = "x"\nsecret = "s"\ndirectory = "dir/bad.toml"\n', "bad.toml"),
    ],
)
def test_config_mistakes_name_the_file_and_key(
    tmp_path: Path, extra: str, system: str, words: str
) -> None:
    path = write_config(tmp_path, extra=extra)
    (tmp_path / "dir" / "bad.toml").write_text('[[agency]]\ncode = "h35"\n', encoding="utf-8")
    path.write_text(path.read_text(encoding="utf-8") + system, encoding="utf-8")
    with pytest.raises(SimulatorConfigError, match=re.escape(words)) as caught:
        load_simulator_config(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_an_agency_served_twice_is_refused() -> None:
    twice = SimulatorConfig((SystemConfig("a", "s", H35), SystemConfig("b", "t", H35[:1])))
    with pytest.raises(SimulatorConfigError, match="served by both"):
        build_simulator_app(twice)


async def test_serve_picks_a_port_and_stops_when_cancelled() -> None:
    ready: asyncio.Queue[int] = asyncio.Queue()
    task = asyncio.create_task(serve_simulator(direct_config(), port=0, ready=ready.put_nowait))
    port = await asyncio.wait_for(ready.get(), 5)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/_sim/healthz") as resp,
    ):
        assert resp.status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_command_serves_until_sigterm(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.national_axis.simulator",
        "--config",
        str(config),
        "--port",
        "0",
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        found = None
        while found is None:
            line = await asyncio.wait_for(proc.stderr.readline(), 10)
            assert line, "the simulator exited before listening"
            found = re.search(rb"axis simulator listening on http://127\.0\.0\.1:(\d+)", line)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{int(found[1])}/_sim/healthz") as resp,
        ):
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        await proc.stderr.read()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_the_command_reports_a_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err
