"""A credential made a moment ago (by the CLI of another process) works at once: an
unknown credential makes the instance read the directory to its end before refusing;
a burst of unknown credentials shares one read."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import make_mocked_request

from adapters.http_api.access import Access
from broker.core.errors import AccessRefused
from broker.directory.auth import Principal
from tests.api.conftest import AgencyClient
from tests.credentials import grant_tokens

OFFICE = "000.00.01.H35"


async def test_unknown_credentials_catch_up_with_the_directory_once(
    api: AgencyClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = api.runtime
    follower = runtime.directory.follower
    real = follower.caught_up
    calls: list[float] = []

    async def counted(timeout: float = 60.0) -> None:
        calls.append(timeout)
        await real(timeout)

    monkeypatch.setattr(follower, "caught_up", counted)
    access = Access.from_runtime(runtime)
    unknown = make_mocked_request(
        "GET", "/v1/agencies", headers={"Authorization": "Bearer dbk_nosuch_secret"}
    )
    answers = await asyncio.gather(
        *(access.caller(unknown) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(a, AccessRefused) and a.code == "unauthenticated" for a in answers)
    assert len(calls) == 1, "twenty unknown tokens at once read the directory once"

    # a token written to the log a moment ago is accepted on its first use
    (token,) = (await grant_tokens(runtime.log, runtime.topics.directory, [OFFICE])).values()
    fresh = make_mocked_request("GET", "/v1/agencies", headers={"Authorization": f"Bearer {token}"})
    principal = await access.caller(fresh)
    assert isinstance(principal, Principal) and principal.is_agency(OFFICE)
