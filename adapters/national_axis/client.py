"""A client of the national axis (VDXP) as its official SDK (SDKVXP) speaks it.

Operations are `<base_url>/<operation>`; parameters travel as `XroadVnpt-<name>`
headers, signed with the province's system id and shared secret
(`broker.auth.sign_sdk_headers`: HMAC-SHA256 over the JSON of the signed
headers). Every answer goes through `protocol.read_answer`, so a caller sees a
value or an `AxisError` saying whether the axis refused or was unavailable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import ssl
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from adapters.national_axis.protocol import Answer, AxisError, Failure, read_answer
from broker.auth import sign_sdk_headers

MESSAGE_TYPES = ("edoc", "status")


class AxisClient:
    """One province's connection to the axis (one aiohttp session, reused)."""

    def __init__(
        self,
        base_url: str,
        system_id: str,
        secret: str,
        *,
        timeout: float = 30.0,
        ca_file: str = "",
        replay_headers: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.system_id = system_id
        self._secret = secret
        self.replay_headers = replay_headers
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_file) if ca_file else True
        )
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, params: Mapping[str, str]) -> dict[str, str]:
        values = {"systemid": self.system_id, **params}
        if self.replay_headers:
            values["timestamp"] = str(int(time.time() * 1000))
            values["nonce"] = secrets.token_hex(16)
        return sign_sdk_headers(values, self._secret)

    async def call(
        self, operation: str, params: Mapping[str, str] | None = None, data: Any = None
    ) -> Answer:
        """One signed request; the answer read, or AxisError."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = f"{self.base_url}/{operation}"
        try:
            async with self._session.post(
                url, headers=self._headers(params or {}), data=data, ssl=self._ssl
            ) as resp:
                try:
                    body = await resp.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    body = None
                return read_answer(resp.status, body)
        except TimeoutError:
            raise AxisError(Failure.UNAVAILABLE, "timeout", f"{operation}: no answer") from None
        except aiohttp.ClientError as exc:
            raise AxisError(Failure.UNAVAILABLE, "connection", f"{operation}: {exc}") from None

    # -- documents

    async def send_edoc(
        self, package: bytes, sender: str, to: list[str], messagetype: str
    ) -> Answer:
        """sendEdoc: the package as the multipart part file_doc, its SHA-256 signed as
        hash-file. `answer.already_there`: the axis had it (a resend)."""
        form = aiohttp.FormData()
        form.add_field("file_doc", package, filename="edoc.edxml", content_type="application/xml")
        params = {
            "from": sender,
            "to": json.dumps(to),
            "servicetype": "eDoc",
            "messagetype": messagetype,
            "hash-file": hashlib.sha256(package).hexdigest(),
        }
        return await self.call("sendEdoc", params, form)

    async def received(self, messagetype: str) -> list[dict[str, Any]]:
        """getReceivedEdocList: what waits for this province, of one message type."""
        answer = await self.call("getReceivedEdocList", {"messagetype": messagetype})
        return list(answer.fields.get("data") or [])

    async def get_edoc(self, doc_id: str) -> bytes:
        answer = await self.call("getEdoc", {"docId": doc_id})
        try:
            return base64.b64decode(str(answer.fields.get("data") or ""), validate=True)
        except (binascii.Error, ValueError):
            message = f"getEdoc {doc_id}: data is not base64"
            raise AxisError(Failure.REFUSED, "bad-answer", message) from None

    async def update_status(self, doc_id: str, status: str) -> None:
        """updateStatus: the transport acknowledgement, done or fail."""
        await self.call("updateStatus", {"docId": doc_id, "status": status})

    async def sent(self) -> list[dict[str, Any]]:
        """getSentEdocList: what this province sent, and whether it was taken."""
        return list((await self.call("getSentEdocList")).fields.get("data") or [])

    # -- the directory

    async def agencies(self, *, qd20: bool) -> list[dict[str, Any]]:
        """getAgenciesListQD20 (QĐ 20 codes) or getAgenciesList (QCVN 102 codes)."""
        operation = "getAgenciesListQD20" if qd20 else "getAgenciesList"
        return list((await self.call(operation)).fields.get("data") or [])
