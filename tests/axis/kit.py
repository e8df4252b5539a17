"""The axis simulator's test kit: two systems' configuration, and a caller that
builds its requests as the SDK does (`adapters.national_axis.client`'s pure request
builders over `broker.vdxp`; tests/interop checks those against the real jars)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from adapters.national_axis.client import SdkRequest, sdk_request, send_edoc_request
from adapters.national_axis.simulator import SimulatorConfig, SystemConfig
from broker import vdxp
from broker.directory.io import to_toml
from broker.directory.model import Agency

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "<?xml version='1.0' encoding='UTF-8'?><edXML><Body>văn bản</Body></edXML>".encode()
SECRET_A = "secret-of-h35"
SECRET_B = "secret-of-h36"
# An SDK timestamp from days ago: the SDK fixes it when its service object is built.
STAMP = "24112026T080000+0042"
VN_TIME = re.compile(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d")

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
        + 'organ_id = "000.99.99.H35"\n'
        + f'[[system]]\nid = "vdxp-h36"\nsecret = "{SECRET_B}"\ndirectory = "dir/h36.toml"\n'
    )
    path = tmp_path / "sim.toml"
    path.write_text(text, encoding="utf-8")
    return path


def direct_config(seed: int | None = 7) -> SimulatorConfig:
    return SimulatorConfig(
        (
            SystemConfig("vdxp-h35", SECRET_A, H35, organ_id="000.99.99.H35"),
            SystemConfig("vdxp-h36", SECRET_B, H36),
        ),
        seed=seed,
    )


@dataclass
class Caller:
    """One system calling the simulator with requests in the SDK's form."""

    client: TestClient
    system_id: str
    secret: str

    def request(self, operation: str, **params: str) -> SdkRequest:
        return sdk_request(operation, self.system_id, self.secret, STAMP, params)

    async def send(
        self, req: SdkRequest, *, headers: list[tuple[str, str]] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Send a request (other headers if given); the HTTP status and JSON answer."""
        resp = await self.client.request(
            req.method, f"/{req.operation}", headers=headers or req.headers, data=req.body
        )
        async with resp:
            return resp.status, json.loads(await resp.read())

    async def call(self, operation: str, **params: str) -> tuple[int, dict[str, Any]]:
        return await self.send(self.request(operation, **params))

    async def send_edoc(
        self,
        package: bytes,
        to: list[str],
        *,
        sender: str = "000.00.01.H35",
        messagetype: str = "edoc",
    ) -> tuple[int, dict[str, Any]]:
        return await self.send(
            send_edoc_request(self.system_id, self.secret, STAMP, package, sender, to, messagetype)
        )

    async def received(self, messagetype: str = "edoc") -> list[dict[str, Any]]:
        status, body = await self.call(
            "getReceivedEdocList", servicetype="eDoc", messagetype=messagetype
        )
        assert (status, body["status"]) == (200, "OK"), body
        return body["data"]

    async def sent(self) -> list[dict[str, Any]]:
        status, body = await self.call("getSentEdocList", servicetype="eDoc")
        assert (status, body["status"]) == (200, "OK"), body
        return body["data"]

    async def register(self, agency: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """registerAgency: the agency in a JSON body, which the signature does not cover."""
        headers = vdxp.request_map(self.system_id, STAMP, vdxp.JSON, {}).headers(self.secret)
        body = json.dumps(agency).encode()
        return await self.send(SdkRequest("POST", "registerAgency", headers, body))


Clients = Callable[[SimulatorConfig], Awaitable[tuple[Caller, Caller]]]


async def sim_state(caller: Caller) -> dict[str, Any]:
    async with await caller.client.get("/_sim/state") as resp:
        assert resp.status == 200
        return await resp.json()


async def set_faults(caller: Caller, **faults: Any) -> dict[str, Any]:
    async with await caller.client.post("/_sim/faults", json=faults) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return body
