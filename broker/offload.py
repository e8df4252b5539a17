"""CPU work of one request off the event loop once it is large enough to be felt.

Hashing, base64 and JSON of a body of tens of MB take tens of milliseconds; on the
event loop that stalls every other request, fetch and Kafka heartbeat of the
instance for as long. Below LARGE bytes the same work takes microseconds, less than
handing it to a thread, so it stays where it is. asyncio.to_thread carries the
request's log context (structlog contextvars) into the thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

LARGE = 256 * 1024  # bytes: above this, a body's CPU work runs in a worker thread


async def off_loop(size: int, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)`, in a worker thread when `size` (the bytes it works on)
    is over LARGE, else right here."""
    if size > LARGE:
        return await asyncio.to_thread(fn, *args, **kwargs)
    return fn(*args, **kwargs)


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def sha256_hex(data: bytes) -> str:
    """The SHA-256 of `data`, hex (hashlib lets go of the GIL: other threads run)."""
    return await off_loop(len(data), _sha256_hex, data)


async def b64encode(data: bytes) -> str:
    """`data` in base64, as text."""
    return await off_loop(len(data), _b64, data)
