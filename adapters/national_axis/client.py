"""A client of the national axis (VDXP) that sends what VNPT's SDK (SDKVXP 2.0.1) sends.

The real axis accepts what the SDK sends, so docbroker sends that, request for
request (tests/interop compares the two on the wire), as `broker.vdxp` reads it
from the jars:

- `<base_url>/<operation>`, with the HTTP method and body the SDK's transport
  uses for it (`vdxp.METHOD_AND_BODY`): the list and directory operations POST an empty form,
  getEdoc, updateStatus and the counts POST `{}`, sendEdoc POSTs the file's bytes
  and CRLF as `application/octet-stream`;
- the headers of a fresh SDK parameter map (`vdxp.request_map`): each parameter
  as `XroadVnpt-<name>`, the map's Content-Type, the signature headers, the SDK's
  User-Agent and version, in `java.util.HashMap` order. A fresh map per request:
  the SDK's left-overs from earlier calls are an accident, not a protocol.
- the timestamp in the SDK's form (`ddMMyyyy'T'HHmmss+SSSS`), made per request:
  the SDK fixes it when its service object is built, and agency systems build
  those whenever they like, so a request stamped now is one the axis already
  takes from a freshly built SDK object; it also says when the request was made,
  where the SDK's says when its process started. No nonce: the SDK has none.

Every answer goes through `protocol.read_answer`, so a caller sees a value or an
`AxisError` saying whether the axis refused or was unavailable.
"""

from __future__ import annotations

import base64
import binascii
import json
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from adapters.national_axis.protocol import Answer, AxisError, Failure, items, read_answer
from broker import vdxp
from broker.offload import off_loop

MESSAGE_TYPES = vdxp.MESSAGE_TYPES
SERVICE_TYPE = "eDoc"


@dataclass(frozen=True, slots=True)
class SdkRequest:
    """One request as the SDK sends it: headers in the order it sends them."""

    method: str
    operation: str
    headers: list[tuple[str, str]]
    body: bytes


def sdk_request(
    operation: str, system_id: str, secret: str, timestamp: str, params: Mapping[str, str]
) -> SdkRequest:
    """Any operation but sendEdoc, as a fresh SDK service object makes it. Pure."""
    method, body = vdxp.METHOD_AND_BODY[operation]
    entries = vdxp.request_map(system_id, timestamp, vdxp.JSON, params)
    return SdkRequest(method, operation, entries.headers(secret), body)


def send_edoc_request(
    system_id: str,
    secret: str,
    timestamp: str,
    package: bytes,
    sender: str,
    to: Sequence[str],
    messagetype: str,
) -> SdkRequest:
    """sendEdoc as the SDK makes it (`KnobstickServiceImp.sendEdoc`): the caller's
    parameters, then `hash-file`; the raw file and CRLF as the body. It goes out
    through HttpURLConnection, on which `MultipartUtility` set Content-Type before
    any other header (a later set replaces the value in place), so Content-Type
    leads. Pure."""
    params = {
        "from": sender,
        "to": vdxp.to_parameter(to),
        "servicetype": SERVICE_TYPE,
        "messagetype": messagetype,
    }
    entries = vdxp.request_map(system_id, timestamp, vdxp.OCTET_STREAM, params)
    entries.put("hash-file", vdxp.sdk_hash_file(package))
    headers = [("Content-Type", vdxp.OCTET_STREAM)]
    headers += [h for h in entries.headers(secret) if h[0] != "Content-Type"]
    return SdkRequest("POST", "sendEdoc", headers, vdxp.send_edoc_body(package))


class AxisClient:
    """One province's connection to the axis (one aiohttp session, reused).

    `clock` gives the local time each request is stamped with (the SDK formats the
    JVM's local time); tests pass one to reproduce a given SDK request."""

    def __init__(
        self,
        base_url: str,
        system_id: str,
        secret: str,
        *,
        timeout: float = 30.0,
        ca_file: str = "",
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.system_id = system_id
        self._secret = secret
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_file) if ca_file else True
        )
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _timestamp(self) -> str:
        return vdxp.sdk_timestamp(self._clock())

    async def call(self, operation: str, params: Mapping[str, str] | None = None) -> Answer:
        """One operation (not sendEdoc) with these parameters; the answer read, or
        AxisError."""
        request = sdk_request(
            operation, self.system_id, self._secret, self._timestamp(), params or {}
        )
        return await self.send(request)

    async def send(self, request: SdkRequest) -> Answer:
        """Send a prepared request; its answer read, or AxisError."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = f"{self.base_url}/{request.operation}"
        try:
            async with self._session.request(
                request.method, url, headers=request.headers, data=request.body, ssl=self._ssl
            ) as resp:
                raw = await resp.read()
                body = await off_loop(len(raw), json_or_none, raw)  # getEdoc's: tens of MB
                return read_answer(resp.status, body)
        except TimeoutError:
            raise AxisError(
                Failure.UNAVAILABLE, "timeout", f"{request.operation}: no answer"
            ) from None
        except aiohttp.ClientError as exc:
            raise AxisError(
                Failure.UNAVAILABLE, "connection", f"{request.operation}: {exc}"
            ) from None

    # -- documents

    async def send_edoc(
        self, package: bytes, sender: str, to: Sequence[str], messagetype: str
    ) -> Answer:
        """sendEdoc: the axis's id for the package is `answer.fields["DocId"]`;
        `answer.already_there`: the axis had it (a resend)."""
        request = send_edoc_request(
            self.system_id, self._secret, self._timestamp(), package, sender, to, messagetype
        )
        return await self.send(request)

    async def received(self, messagetype: str) -> list[Mapping[str, Any]]:
        """getReceivedEdocList: what waits for this province, of one message type
        (items with `docId`, `from`, `to`, `status`, …)."""
        params = {"servicetype": SERVICE_TYPE, "messagetype": messagetype}
        return items(await self.call("getReceivedEdocList", params), "getReceivedEdocList")

    async def get_edoc(self, doc_id: str) -> bytes:
        """getEdoc: the package, which the axis sends base64 in `data`."""
        answer = await self.call("getEdoc", {"docId": doc_id})
        data = str(answer.fields.get("data") or "")
        try:
            return await off_loop(len(data), base64.b64decode, data, validate=True)
        except (binascii.Error, ValueError):
            message = f"getEdoc {doc_id}: data is not base64"
            raise AxisError(Failure.REFUSED, "bad-answer", message) from None

    async def update_status(self, doc_id: str, status: str) -> None:
        """updateStatus: the transport acknowledgement, done or fail."""
        await self.call("updateStatus", {"docId": doc_id, "status": status})

    async def sent(self) -> list[Mapping[str, Any]]:
        """getSentEdocList: one item per recipient's copy of what this province sent
        (`senderDocId`, `toCode`, `sendStatus`, `receiveStatus`, …)."""
        answer = await self.call("getSentEdocList", {"servicetype": SERVICE_TYPE})
        return items(answer, "getSentEdocList")

    async def count(self, messagetype: str) -> int:
        """countReceiveEdoc / countReceiveStatus: how many wait, of one message type."""
        operation = "countReceiveStatus" if messagetype == "status" else "countReceiveEdoc"
        value = (await self.call(operation)).fields.get("count")
        try:
            return int(str(value))
        except ValueError:
            raise AxisError(Failure.UNAVAILABLE, "bad-answer", f"{operation}: no count") from None

    # -- the directory

    async def agencies(self, *, qd20: bool) -> list[Mapping[str, Any]]:
        """getAgenciesListQD20 (QĐ 20 codes, with `code102`) or getAgenciesList
        (QCVN 102 codes, with `oldCode`); both with `id` and the parent's `pid`."""
        operation = "getAgenciesListQD20" if qd20 else "getAgenciesList"
        return items(await self.call(operation), operation)

    async def synchronize_units(self) -> list[Mapping[str, Any]]:
        """getSynchronizeUnit: the units with their version and deletion mark."""
        return items(await self.call("getSynchronizeUnit"), "getSynchronizeUnit")


def json_or_none(raw: bytes) -> Any:
    """The JSON of an answer's body (as its bytes say: UTF-8, -16 or -32); None for an
    empty body or one that is not JSON (read_answer says what that means)."""
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None
