"""Fair limits on the daemon's own server, on a real socket: an agency's requests and
long polls under way (429), the server's request bytes in flight (503), on /v1 and on
the SDK surface (answered in the form the SDK reads), and every slot given back on
every way a request ends: answered, failed, cancelled (a client gone while the
handler waits: the runner here cancels handlers of lost connections)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from adapters.http_api.limits import ADMISSION
from tests.api.served import Served, serve
from tests.credentials import runtime_system, runtime_tokens
from tests.edxml_samples import document
from tests.sdk_client import SdkClient

A, B = "000.00.00.H35", "000.00.01.H35"
PROBLEM = "application/problem+json"
ENVELOPE_LIMIT, BYTES_IN_FLIGHT = 100_000, 150_000
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def served(tmp_path: Path, unique_prefix: str) -> AsyncIterator[Served]:
    env = {
        "DOCBROKER_HTTP_RATE_LIMIT": "0",
        "DOCBROKER_HTTP_AGENCY_MAX_REQUESTS": "4",
        "DOCBROKER_HTTP_AGENCY_MAX_LONG_POLLS": "2",
        "DOCBROKER_LIMITS_MAX_ENVELOPE_BYTES": str(ENVELOPE_LIMIT),
        "DOCBROKER_HTTP_MAX_BYTES_IN_FLIGHT": str(BYTES_IN_FLIGHT),
    }
    async with serve(tmp_path, unique_prefix, env, handler_cancellation=True) as served:
        yield served


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def code(served: Served, agency: str) -> str:
    """The agency's directory code: what its requests are counted under."""
    found = served.runtime.directory.current.find(agency)
    assert found is not None
    return found.code


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within the time")


async def held_submission(served: Served, token: str, length: int) -> Connection:
    """A submission whose body is announced and never sent in full: it stays under way."""
    conn = await asyncio.open_connection("127.0.0.1", served.port)
    conn[1].write(
        b"POST /v1/envelopes HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n<edXML" % (token.encode(), length)
    )
    await conn[1].drain()
    return conn


async def hang_up(*conns: Connection) -> None:
    for _, writer in conns:
        writer.close()
        await writer.wait_closed()


async def limited(served: Served, session: aiohttp.ClientSession, reason: str) -> float:
    async with session.get(f"{served.url}/metrics") as resp:
        text = await resp.text()
    (line,) = [x for x in text.splitlines() if f'limited_total{{reason="{reason}"}}' in x]
    return float(line.split()[-1])


async def assert_refused(resp: aiohttp.ClientResponse, status: int, code: str) -> dict:
    """A problem+json refusal naming its cap, with Retry-After."""
    assert resp.status == status and resp.content_type == PROBLEM
    assert int(resp.headers["Retry-After"]) >= 1
    body = await resp.json()
    assert body["type"] == f"urn:docbroker:problem:{code}" and body["code"] == code
    assert body["status"] == status and "http." in body["title"] and body["detail"]
    return body


async def test_long_polls_beyond_an_agencys_cap_get_429_and_cancelled_ones_free_their_slots(
    served: Served, session: aiohttp.ClientSession
) -> None:
    tokens = await runtime_tokens(served.runtime, [A, B])
    auth = {c: {"Authorization": f"Bearer {t}"} for c, t in tokens.items()}
    admission = served.app[ADMISSION]
    a, b = code(served, A), code(served, B)
    mailbox = f"{served.url}/v1/mailboxes/{A}/envelopes"
    polls = [
        asyncio.ensure_future(session.get(f"{mailbox}?wait=30", headers=auth[A])) for _ in range(2)
    ]
    await until(lambda: admission.long_polls.get(a) == 2)
    async with session.get(f"{mailbox}?wait=30", headers=auth[A]) as resp:
        body = await assert_refused(resp, 429, "too-many-long-polls")
    assert "http.agency_max_long_polls" in body["title"]
    assert body["detail"].startswith(f"{a} has 2 long polls") and b not in body["detail"]
    assert await limited(served, session, "agency-long-polls") == 1
    # a listing that does not wait is no long poll; another agency polls as it likes
    async with session.get(mailbox, headers=auth[A]) as resp:
        assert resp.status == 200
    b_poll = f"{served.url}/v1/mailboxes/{B}/envelopes?wait=0.2"
    async with session.get(b_poll, headers=auth[B]) as resp:
        assert resp.status == 200
    assert admission.requests == {a: 2} and admission.long_polls == {a: 2}

    for poll in polls:  # the clients give up: their handlers are cancelled
        poll.cancel()
    await asyncio.gather(*polls, return_exceptions=True)
    await until(lambda: admission.requests == {} and admission.long_polls == {})
    async with session.get(f"{mailbox}?wait=0.1", headers=auth[A]) as resp:
        assert resp.status == 200  # and a long poll that ran out gives its slot back
    assert admission.requests == {} and admission.long_polls == {}


async def test_requests_beyond_an_agencys_cap_get_429_on_v1_and_on_the_sdk_surface(
    served: Served, session: aiohttp.ClientSession
) -> None:
    tokens = await runtime_tokens(served.runtime, [A, B])
    system, secret = await runtime_system(
        served.runtime, A, plain_http=True, networks=("127.0.0.1/32",)
    )
    sdk = SdkClient(session, f"{served.url}/vdxp", system, secret)
    admission = served.app[ADMISSION]
    a, b = code(served, A), code(served, B)
    held = [await held_submission(served, tokens[A], 1000) for _ in range(4)]
    await until(lambda: admission.requests.get(a) == 4)
    agencies = f"{served.url}/v1/agencies"
    async with session.get(agencies, headers={"Authorization": f"Bearer {tokens[A]}"}) as resp:
        body = await assert_refused(resp, 429, "too-many-concurrent-requests")
    assert body["detail"].startswith(f"{a} has 4 requests") and b not in body["detail"]
    assert "http.agency_max_requests" in body["detail"]
    # the agency's SDK system shares its cap; the SDK reads the refusal in its form
    status, answer = await sdk.count()
    assert status == 429 and answer["status"] == "FAIL", answer
    assert answer["ErrorCode"] == "too-many-concurrent-requests" and answer["ErrorDesc"]
    async with session.get(agencies, headers={"Authorization": f"Bearer {tokens[B]}"}) as resp:
        assert resp.status == 200
    assert await limited(served, session, "agency-requests") == 2

    await hang_up(*held)  # bodies that never come: the requests fail, their slots free
    await until(lambda: admission.requests == {} and admission.bytes.in_flight == 0)
    status, answer = await sdk.count()
    assert status == 200 and answer["status"] == "OK", answer


async def test_bodies_beyond_the_bytes_in_flight_get_503_by_length_or_as_they_arrive(
    served: Served, session: aiohttp.ClientSession
) -> None:
    tokens = await runtime_tokens(served.runtime, [A, B])
    auth_b = {"Authorization": f"Bearer {tokens[B]}", "Content-Type": "application/xml"}
    budget = served.app[ADMISSION].bytes
    held = await held_submission(served, tokens[A], ENVELOPE_LIMIT)
    await until(lambda: budget.in_flight == ENVELOPE_LIMIT)
    room = BYTES_IN_FLIGHT - ENVELOPE_LIMIT
    large = document(sender=B, recipients=(A,), document_id=f"{B},x,1/L", padding=room)
    url = f"{served.url}/v1/envelopes"
    async with session.post(url, data=large, headers=auth_b) as resp:
        body = await assert_refused(resp, 503, "too-many-bytes-in-flight")
    assert "http.max_bytes_in_flight" in body["detail"] and code(served, A) not in body["detail"]

    # a chunked body is counted as it arrives: refused once it passes the budget
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(
        b"POST /v1/envelopes HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
        b"Authorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n" % tokens[B].encode()
        + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in [large[i : i + 8192] for i in
                                                            range(0, len(large), 8192)])
    )  # fmt: skip
    await writer.drain()
    answer = b""
    async with asyncio.timeout(10):
        while b'"instance"' not in answer:
            answer += await reader.read(65536)
    assert answer.startswith(b"HTTP/1.1 503") and b"too-many-bytes-in-flight" in answer
    assert b"Retry-After: 1" in answer and b"Connection: close" in answer
    await hang_up((reader, writer))

    # what fits is taken, chunked (read here, handed to the handler) or not
    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    small = document(sender=B, recipients=(A,), document_id=f"{B},x,2/S", padding=room // 2)
    async with session.post(url, data=chunks(small), headers=auth_b) as resp:
        assert resp.status == 202, await resp.text()
        assert (await resp.json())["size"] == len(small)
    other = document(sender=B, recipients=(A,), document_id=f"{B},x,3/S")
    async with session.post(url, data=other, headers=auth_b) as resp:
        assert resp.status == 202
    assert await limited(served, session, "bytes-in-flight") == 2
    assert budget.in_flight == ENVELOPE_LIMIT

    # the SDK surface: a 503 the SDK reads
    system, secret = await runtime_system(
        served.runtime, B, plain_http=True, networks=("127.0.0.1/32",)
    )
    sdk = SdkClient(session, f"{served.url}/vdxp", system, secret)
    status, answer = await sdk.send_edoc(large, B, [A])
    assert status == 503 and answer["status"] == "FAIL", answer
    assert answer["ErrorCode"] == "too-many-bytes-in-flight" and answer["ErrorDesc"]
    assert await limited(served, session, "bytes-in-flight") == 3

    await hang_up(held)
    await until(lambda: budget.in_flight == 0)
    status, answer = await sdk.send_edoc(large, B, [A])
    assert status == 200 and answer["status"] == "OK", answer
