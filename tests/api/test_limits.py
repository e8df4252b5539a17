"""Limits that protect the broker from its callers: per-agency rate, Idempotency-Key
reuse, slow and idle clients, and the connection cap. The server here is the
daemon's own (CappedSite, the runner options), on a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.api.served import Served, serve
from tests.credentials import runtime_tokens
from tests.edxml_samples import document

SENDER = "000.00.00.H35"
XML = {"Content-Type": "application/xml"}


@pytest.fixture
def backend() -> str:
    return "embedded"


@pytest.fixture
async def served(tmp_path: Path, unique_prefix: str) -> AsyncIterator[Served]:
    env = {
        "DOCBROKER_HTTP_RATE_LIMIT": "5",
        "DOCBROKER_HTTP_RATE_BURST": "5",
        "DOCBROKER_HTTP_IDLE_TIMEOUT": "1",
        "DOCBROKER_HTTP_REQUEST_TIMEOUT": "1",
        "DOCBROKER_HTTP_MAX_CONNECTIONS": "3",
    }
    async with serve(tmp_path, unique_prefix, env) as served:
        yield served


async def test_an_agency_over_its_rate_gets_429_with_retry_after(served: Served) -> None:
    (token,) = (await runtime_tokens(served.runtime, [SENDER])).values()
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(8):
            async with session.get(f"{served.url}/v1/agencies", headers=auth) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert int(resp.headers["Retry-After"]) >= 1
                    assert (await resp.json())["code"] == "rate-limited"
        assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
        async with session.get(f"{served.url}/metrics") as resp:
            metrics = await resp.text()
        refused = statuses.count(429)
        assert (
            f'docbroker_access_refused_total{{code="rate-limited",surface="native"}} {refused}.0'
            in metrics
        )
        assert f'docbroker_http_limited_total{{reason="rate"}} {refused}.0' in metrics
        # another agency has its own budget
        (other,) = (await runtime_tokens(served.runtime, ["000.00.01.H35"])).values()
        async with session.get(
            f"{served.url}/v1/agencies", headers={"Authorization": f"Bearer {other}"}
        ) as resp:
            assert resp.status == 200


async def test_an_idempotency_key_reused_for_another_body_is_refused(served: Served) -> None:
    (token,) = (await runtime_tokens(served.runtime, [SENDER])).values()
    headers = {**XML, "Authorization": f"Bearer {token}", "Idempotency-Key": "order-1"}
    async with aiohttp.ClientSession() as session:
        url = f"{served.url}/v1/envelopes"
        first = await (await session.post(url, data=document(), headers=headers)).json()
        async with session.post(url, data=document(), headers=headers) as resp:
            assert resp.status == 202 and resp.headers["Idempotent-Replayed"] == "true"
            assert (await resp.json())["message_id"] == first["message_id"]
        other = document(document_id=f"{SENDER},2026/11/24,2/OTHER")
        async with session.post(url, data=other, headers=headers) as resp:
            assert resp.status == 422
            assert (await resp.json())["code"] == "idempotency-key-reused"


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    out = b""
    async with asyncio.timeout(timeout):
        while chunk := await reader.read(4096):
            out += chunk
    return out


async def test_a_slow_body_gets_408_and_idle_connections_are_closed(served: Served) -> None:
    (token,) = (await runtime_tokens(served.runtime, [SENDER])).values()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(
        b"POST /v1/envelopes HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 1000\r\n\r\n<edXML"
    )
    await writer.drain()
    answer = b""
    async with asyncio.timeout(10):  # aiohttp then lingers a while before closing
        while b"request-timeout" not in answer:
            answer += await reader.read(4096)
    assert answer.startswith(b"HTTP/1.1 408") and b"Connection: close" in answer
    writer.close()
    # half-sent headers, then silence: closed after the idle timeout
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    started = asyncio.get_running_loop().time()
    assert await read_until_closed(reader, 10) == b""
    assert asyncio.get_running_loop().time() - started < 5
    writer.close()


async def test_beyond_the_connection_cap_a_connection_is_answered_503(served: Served) -> None:
    held = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(3)]
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    answer = await read_until_closed(reader, 5)
    assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in answer
    writer.close()
    assert served.site.refused == 1
    for _, w in held:
        w.close()
    await asyncio.sleep(0.2)  # the held connections are gone: room again
    async with aiohttp.ClientSession() as session, session.get(f"{served.url}/healthz") as resp:
        assert resp.status == 200
