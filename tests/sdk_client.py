"""An agency system that speaks as VNPT's unchanged SDK (SDKVXP 2.0.1) does, in Python.

It keeps the SDK's one parameter map (broker.vdxp.ParameterMap: the timestamp fixed
when the client is made, parameters left over from earlier calls, HashMap header
order) and sends each operation with the SDK's method and body. That this is what the
jars send is checked against the jars themselves (tests/interop/); the scenarios
that need the real SDK run it (tests/interop/test_sdk_daemon.py). This client serves
the tests that need many fast calls (the access matrix, refusal details).
"""

from __future__ import annotations

import json
import ssl
from datetime import datetime
from typing import Any

import aiohttp

from broker import vdxp


class SdkClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        system_id: str,
        secret: str,
        *,
        ssl: ssl.SSLContext | bool = True,
        timestamp: str | None = None,
    ) -> None:
        self.session = session
        self.base = base_url.rstrip("/")
        self.system_id = system_id
        self.secret = secret
        self.ssl = ssl
        self.entries = vdxp.ParameterMap()
        self.entries.put("timestamp", timestamp or vdxp.sdk_timestamp(datetime.now()))
        self.entries.put("systemid", system_id)

    def headers(self, content_type: str = vdxp.JSON, **params: str) -> list[tuple[str, str]]:
        """Put the call's parameters into the map (they stay there) and sign it all."""
        self.entries.put("Content-Type", content_type)
        self.entries.update(params)
        return self.entries.headers(self.secret)

    async def call(
        self, operation: str, *, body: bytes | None = None, **params: str
    ) -> tuple[int, dict[str, Any]]:
        method, default_body = vdxp.METHOD_AND_BODY.get(operation, ("POST", b""))
        if body is None:
            body = default_body
        headers = self.headers(**params)
        status, data = await self.raw(method, operation, headers, body)
        return status, json.loads(data) if data else {}

    async def raw(
        self, method: str, operation: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, bytes]:
        async with self.session.request(
            method, f"{self.base}/{operation}", data=body, headers=headers, ssl=self.ssl
        ) as resp:
            return resp.status, await resp.read()

    async def send_edoc(
        self, package: bytes, sender: str, recipients: list[str], messagetype: str = "edoc"
    ) -> tuple[int, dict[str, Any]]:
        """sendEdoc: the file then CRLF as the body, its lossy SHA-256 as hash-file."""
        params = {"from": sender, "to": vdxp.to_parameter(recipients), "servicetype": "eDoc",
                  "messagetype": messagetype, "hash-file": vdxp.sdk_hash_file(package)}  # fmt: skip
        headers = self.headers(vdxp.OCTET_STREAM, **params)
        status, data = await self.raw("POST", "sendEdoc", headers, vdxp.send_edoc_body(package))
        return status, json.loads(data)

    async def received(self, messagetype: str = "edoc") -> tuple[int, dict[str, Any]]:
        return await self.call("getReceivedEdocList", messagetype=messagetype, servicetype="eDoc")

    async def get_edoc(self, doc_id: str) -> tuple[int, dict[str, Any]]:
        return await self.call("getEdoc", docId=doc_id)

    async def download(self, doc_id: str) -> tuple[int, bytes]:
        headers = self.headers(docId=doc_id)
        return await self.raw("GET", "downloadEdoc", headers, b"")

    async def update_status(self, doc_id: str, status: str = "done") -> tuple[int, dict[str, Any]]:
        return await self.call("updateStatus", docId=doc_id, status=status)

    async def sent(self) -> tuple[int, dict[str, Any]]:
        return await self.call("getSentEdocList", servicetype="eDoc")

    async def count(self, operation: str = "countReceiveEdoc") -> tuple[int, dict[str, Any]]:
        return await self.call(operation)
