"""A client of the national axis's SDK protocol, written from the notes (EDXML.md,
"National axis (VDXP) protocol"), independently of docbroker's own code: it is
what an agency system built on SDKVXP sends, so that the tests check docbroker
against the protocol and not against itself.

- base URL + `/<operation>`;
- every parameter `k` travels as the header `XroadVnpt-k`;
- `XroadVnpt-sign-header-key`: the `;`-joined names of the signed headers,
  `XroadVnpt-sign-header`: a JSON object of those headers and their values,
  `XroadVnpt-hash-header`: hex HMAC-SHA256(secret, that JSON);
- identity = `systemid` + shared secret; docbroker also wants a signed
  `timestamp` (epoch ms) and `nonce` against replays (unless the system is
  registered as legacy, which `fresh=False` imitates);
- answers: `{status: OK|FAIL, ErrorCode ("0" = success), ErrorDesc, ...}`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
import uuid
from typing import Any

import aiohttp


class SdkClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        system_id: str,
        secret: str,
        *,
        fresh: bool = True,
        ssl: ssl.SSLContext | bool = True,
    ) -> None:
        self.session = session
        self.base = base_url.rstrip("/")
        self.system_id = system_id
        self.secret = secret
        self.fresh = fresh
        self.ssl = ssl

    def headers(self, **params: str) -> dict[str, str]:
        values = {"systemid": self.system_id, **params}
        if self.fresh:
            values |= {"timestamp": str(int(time.time() * 1000)), "nonce": uuid.uuid4().hex}
        signed = {f"XroadVnpt-{k}": v for k, v in values.items()}
        text = json.dumps(signed)
        digest = hmac.new(self.secret.encode(), text.encode(), hashlib.sha256).hexdigest()
        return {
            **signed,
            "XroadVnpt-sign-header-key": ";".join(signed),
            "XroadVnpt-sign-header": text,
            "XroadVnpt-hash-header": digest,
        }

    async def call(
        self, operation: str, *, data: Any = None, method: str = "POST", **params: str
    ) -> tuple[int, dict[str, Any]]:
        async with self.session.request(
            method,
            f"{self.base}/{operation}",
            data=data,
            headers=self.headers(**params),
            ssl=self.ssl,
        ) as resp:
            return resp.status, await resp.json()

    async def send_edoc(
        self, package: bytes, sender: str, recipients: list[str], messagetype: str = "edoc"
    ) -> tuple[int, dict[str, Any]]:
        form, params = send_edoc_request(package, sender, recipients, messagetype)
        return await self.call("sendEdoc", data=form, **params)

    async def received(self, messagetype: str = "edoc") -> tuple[int, dict[str, Any]]:
        return await self.call("getReceivedEdocList", messagetype=messagetype, servicetype="eDoc")

    async def get_edoc(self, doc_id: str) -> tuple[int, dict[str, Any]]:
        return await self.call("getEdoc", docId=doc_id)

    async def update_status(self, doc_id: str, status: str = "done") -> tuple[int, dict[str, Any]]:
        return await self.call("updateStatus", docId=doc_id, status=status)

    async def sent(self) -> tuple[int, dict[str, Any]]:
        return await self.call("getSentEdocList", servicetype="eDoc")

    async def count(self, operation: str = "countReceiveEdoc") -> tuple[int, dict[str, Any]]:
        return await self.call(operation)


def send_edoc_request(
    package: bytes,
    sender: str,
    recipients: list[str],
    messagetype: str = "edoc",
    hash_file: str | None = None,
) -> tuple[aiohttp.FormData, dict[str, str]]:
    """sendEdoc's body (the multipart part file_doc) and parameters."""
    form = aiohttp.FormData()
    form.add_field("file_doc", package, filename="edoc.edxml", content_type="application/xml")
    params = {
        "from": sender,
        "to": json.dumps(recipients),
        "servicetype": "eDoc",
        "messagetype": messagetype,
        "hash-file": hash_file or hashlib.sha256(package).hexdigest(),
    }
    return form, params
