"""What an SDK operation hands back, and the HTTP answer made of it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from broker import vdxp
from broker.directory.auth import SdkCall
from broker.runtime import Runtime

# Answers above this size are encoded off the event loop (getEdoc carries a whole
# package in base64: tens of MB).
LARGE_ANSWER = 256 * 1024


@dataclass(frozen=True, slots=True)
class SdkAnswer:
    """A JSON answer (`fields`) or raw bytes (downloadEdoc)."""

    fields: Mapping[str, object] | None = None
    raw: bytes | None = None
    size_hint: int = 0  # bytes the answer will have, roughly (decides where to encode)


Operation = Callable[[web.Request, Runtime, SdkCall], Awaitable[SdkAnswer]]


async def answer_response(answer: SdkAnswer) -> web.Response:
    if answer.raw is not None:
        return web.Response(body=answer.raw, content_type=vdxp.OCTET_STREAM)
    fields = answer.fields or {}
    if answer.size_hint > LARGE_ANSWER:
        body = await asyncio.to_thread(vdxp.answer_bytes, fields)
    else:
        body = vdxp.answer_bytes(fields)
    return web.Response(body=body, content_type=vdxp.JSON)
