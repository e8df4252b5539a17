"""GET /v1/documents over HTTP, in process, on the parametrised backend: who sees
what, every filter, paging, and 400 for bad parameters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.api.conftest import AgencyClient
from tests.edxml_samples import status
from tests.search_kit import numbered

pytestmark = pytest.mark.usefixtures("no_blocking_loop")

XML = {"Content-Type": "application/xml"}
PROVINCE, VP, NOI_VU = "000.00.00.H35", "000.00.01.H35", "000.00.02.H35"
COMMUNE = "000.20.41.H35"  # H35.105.03386


async def admin_auth(api: AgencyClient) -> dict[str, str]:
    from broker.keys.files import ADMIN_TOKENS, new_admin_token

    settings = api.runtime.settings
    token = new_admin_token(settings.key_file(settings.auth.admin_tokens_file, ADMIN_TOKENS))
    return {"Authorization": f"Bearer {token}"}


async def search(
    api: AgencyClient, headers: dict[str, str], expect: int = 200, **params: str
) -> Any:
    resp = await api.get("/v1/documents", params=params, headers=headers)
    assert resp.status == expect, await resp.text()
    return await resp.json()


async def submit(api: AgencyClient, data: bytes) -> dict[str, Any]:
    resp = await api.post("/v1/envelopes", data=data, headers=XML)
    assert resp.status == 202, await resp.text()
    return await resp.json()


async def until_found(api: AgencyClient, headers: dict[str, str], count: int, **params: str) -> Any:
    """Search until the documents view has taken `count` items in."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        page = await search(api, headers, **params, limit="500")
        if len(page["documents"]) >= count:
            return page
        assert asyncio.get_running_loop().time() < deadline, page
        await asyncio.sleep(0.1)


@pytest.fixture
async def province(api: AgencyClient) -> AgencyClient:
    """Five documents: three from the province, one from VP, one from the commune,
    and VP's status 03 about the first."""
    await submit(api, numbered("345", "SCT-VP", recipients=(VP, NOI_VU)))
    await submit(api, numbered("346", "SCT-VP", recipients=(NOI_VU,), subject="Báo cáo"))
    await submit(api, numbered("347", "SCT-VP", recipients=(COMMUNE,)))
    await submit(api, numbered("7", "QĐ-SNV", sender=VP, recipients=(PROVINCE,)))
    await submit(api, numbered("8", "UBND", sender=COMMUNE, recipients=(VP,)))
    first = f"{PROVINCE},2026/11/24,345/SCT-VP"
    await submit(api, status(sender=VP, answers=PROVINCE, document_id=first, code="03"))
    await until_found(api, await admin_auth(api), 6)
    await until_found(api, await admin_auth(api), 1, status="03", kind="document")
    return api


def codes(page: dict[str, Any]) -> list[str]:
    return [d["code"] for d in page["documents"]]


class TestVisibility:
    async def test_an_agency_sees_what_it_sent_and_received_only(
        self, province: AgencyClient
    ) -> None:
        vp = await province.auth(VP)
        assert codes(await search(province, vp, kind="document")) == [
            "8/UBND",  # received
            "7/QĐ-SNV",  # sent
            "345/SCT-VP",  # received
        ]
        noi_vu = await province.auth(NOI_VU)
        assert codes(await search(province, noi_vu)) == ["346/SCT-VP", "345/SCT-VP"]
        assert codes(await search(province, noi_vu, sender="H35.S01")) == []

    async def test_a_recipient_sees_its_own_recipient_state(self, province: AgencyClient) -> None:
        page = await search(province, await province.auth(NOI_VU), code="345/SCT-VP")
        (doc,) = page["documents"]
        assert [r["requested"] for r in doc["recipients"]] == [NOI_VU]
        page = await search(province, await province.auth(PROVINCE), code="345/SCT-VP")
        assert [r["requested"] for r in page["documents"][0]["recipients"]] == [VP, NOI_VU]

    async def test_an_administrator_sees_everything(self, province: AgencyClient) -> None:
        page = await search(province, await admin_auth(province))
        assert len(page["documents"]) == 6 and page["next_cursor"] is None

    async def test_no_credential_no_search(self, province: AgencyClient) -> None:
        resp = await province.client.get("/v1/documents")
        assert resp.status == 401


class TestFilters:
    async def test_each_filter(self, province: AgencyClient) -> None:
        admin = await admin_auth(province)
        first = f"{PROVINCE},2026/11/24,345/SCT-VP"
        cases: list[tuple[dict[str, str], list[str]]] = [
            ({"code": "345/sct-vp"}, ["345/SCT-VP"]),
            ({"code": "34*"}, ["347/SCT-VP", "346/SCT-VP", "345/SCT-VP"]),
            ({"document_id": first, "kind": "document"}, ["345/SCT-VP"]),
            ({"sender": "H35.105.03386"}, ["8/UBND"]),
            ({"sender": VP, "kind": "document"}, ["7/QĐ-SNV"]),
            ({"recipient": "H35.S02"}, ["346/SCT-VP", "345/SCT-VP"]),
            ({"status": "03", "kind": "document"}, ["345/SCT-VP"]),
            ({"status": "routed", "recipient": COMMUNE}, ["347/SCT-VP"]),
            ({"kind": "status"}, [""]),
            ({"from": "2000-01-01", "to": "2000-12-31"}, []),
        ]
        for params, want in cases:
            assert codes(await search(province, admin, **params)) == want, params

    async def test_the_date_range_holds_what_was_accepted_today(
        self, province: AgencyClient
    ) -> None:
        admin = await admin_auth(province)
        page = await search(province, admin, limit="1")
        today = page["documents"][0]["accepted_at"][:10]
        assert (
            len((await search(province, admin, **{"from": today, "to": today}))["documents"]) == 6
        )
        assert len((await search(province, admin, to=today))["documents"]) == 6


class TestPaging:
    async def test_every_item_exactly_once_across_pages(self, province: AgencyClient) -> None:
        admin = await admin_auth(province)
        everything = (await search(province, admin))["documents"]
        seen: list[dict[str, Any]] = []
        params = {"limit": "2"}
        while True:
            page = await search(province, admin, **params)
            seen += page["documents"]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert seen == everything and len(seen) == 6


class TestBadParameters:
    @pytest.mark.parametrize(
        "params",
        [
            {"limit": "0"},
            {"limit": "many"},
            {"limit": "501"},
            {"status": "07"},
            {"kind": "letter"},
            {"from": "24/11/2026"},
            {"from": "2026-11-25", "to": "2026-11-24"},
            {"cursor": "garbage"},
            {"code": ""},
            {"sender": "x" * 300},
        ],
    )
    async def test_answered_400_with_a_stable_code(
        self, api: AgencyClient, params: dict[str, str]
    ) -> None:
        resp = await api.get("/v1/documents", params=params, headers=await api.auth(PROVINCE))
        assert resp.status == 400
        assert resp.content_type == "application/problem+json"
        assert (await resp.json())["code"] == "bad-request"
