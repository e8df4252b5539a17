"""The axis simulator as a service: fault injection, state that survives a restart,
its configuration file, serving and the command."""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from adapters.national_axis.simulator import (
    SimulatorConfig,
    SimulatorConfigError,
    SystemConfig,
    build_simulator_app,
    load_simulator_config,
    main,
    serve_simulator,
)
from tests.axis.kit import (
    H35,
    PACKAGE,
    ROOT,
    Caller,
    Clients,
    direct_config,
    set_faults,
    sim_state,
    write_config,
)

# -- fault injection ---------------------------------------------------------------------


async def test_injected_failures(pair: tuple[Caller, Caller]) -> None:
    a, b = pair
    await set_faults(a, fail_rate=1, fail_status=503, fail_code="Busy", operations=["sendEdoc"])
    status, body = await a.send_edoc(PACKAGE, ["H36"])
    assert (status, body["status"], body["ErrorCode"], body["DocId"]) == (503, "FAIL", "Busy", "")
    assert await b.received() == []  # other operations are untouched
    async with await a.client.delete("/_sim/faults") as resp:
        assert resp.status == 200
    assert (await a.send_edoc(PACKAGE, ["H36"]))[1]["status"] == "OK"
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
        await a.send_edoc(PACKAGE, ["H36"])
    await set_faults(a)
    assert (await a.send_edoc(PACKAGE, ["H36"]))[1]["ErrorCode"] == "ExistDoc"
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


async def test_documents_and_agencies_survive_a_restart(tmp_path: Path, start: Clients) -> None:
    config = load_simulator_config(write_config(tmp_path, state=True))
    assert config.state_file is not None and config.state_file.is_absolute()
    assert config.state_file.parts[-3:] == (tmp_path.name, "state", "axis.sqlite")
    a, b = await start(config)
    await a.send_edoc(PACKAGE, ["H36.S05"])
    await a.send_edoc(PACKAGE + b"2", ["H36.S05"])
    kept, taken = [e["docId"] for e in await b.received()]
    await b.call("updateStatus", docId=taken, status="done")
    await b.register({"code": "H36.P2", "name": "Phòng 2", "pid": "H36"})
    await a.client.close()

    a, b = await start(load_simulator_config(tmp_path / "sim.toml"))
    assert [e["docId"] for e in await b.received()] == [kept]
    assert base64.b64decode((await b.call("getEdoc", docId=kept))[1]["data"]) == PACKAGE
    assert (await a.send_edoc(PACKAGE, ["H36.S05"]))[1]["ErrorCode"] == "ExistDoc"
    assert (await sim_state(a))["entries"]["edoc"] == {
        "initial": 0, "processing": 1, "done": 1, "fail": 0,
    }  # fmt: skip
    assert (await a.send_edoc(PACKAGE, ["H36.P2"]))[1]["status"] == "OK"


def test_the_config_file_is_read(tmp_path: Path) -> None:
    config = load_simulator_config(write_config(tmp_path))
    assert config.state_file is None and config.seed == 7
    assert [s.id for s in config.systems] == ["vdxp-h35", "vdxp-h36"]
    assert [a.code for a in config.systems[0].served] == ["H35", "H35.S01"]
    assert (config.systems[0].organ_id, config.systems[1].organ_id) == ("000.99.99.H35", "")
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
        ("", '[[system]]\nid = "x"\nsecret = "s"\ndirectory = "dir/h36.toml"\norgan_id = 1\n',
         "system[2].organ_id"),
        ("", '[[system]]\nid = "x"\nsecret = "s"\ndirectory = "dir/h36.toml"\n'
         'organ_id = "000.99.99.H35"\n', "000.99.99.H35 is served by both"),
    ],
)  # fmt: skip
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
