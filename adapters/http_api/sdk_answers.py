"""What an SDK operation hands back, and the HTTP answer made of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from broker import vdxp
from broker.directory.auth import SdkCall
from broker.offload import off_loop
from broker.runtime import Runtime


@dataclass(frozen=True, slots=True)
class SdkAnswer:
    """A JSON answer (`fields`) or raw bytes (downloadEdoc)."""

    fields: Mapping[str, object] | None = None
    raw: bytes | None = None
    # bytes the answer will have, roughly: a large one (getEdoc carries a whole package
    # in base64, tens of MB) is encoded off the event loop (broker.offload)
    size_hint: int = 0


Operation = Callable[[web.Request, Runtime, SdkCall], Awaitable[SdkAnswer]]


async def answer_response(answer: SdkAnswer) -> web.Response:
    if answer.raw is not None:
        return web.Response(body=answer.raw, content_type=vdxp.OCTET_STREAM)
    fields = answer.fields or {}
    body = await off_loop(answer.size_hint, vdxp.answer_bytes, fields)
    return web.Response(body=body, content_type=vdxp.JSON)
