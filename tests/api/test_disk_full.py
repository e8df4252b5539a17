"""The door on a full embedded log (SQLite's max_page_count standing in for a full
disk): a submission that cannot be written is answered 503 with a Retry-After, as
problem+json; /readyz names the full disk; with room again the same package is
taken in and delivered once, and the broker is ready, without a restart."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from broker.log.embedded import EmbeddedLog
from tests.api.conftest import AgencyClient
from tests.api.test_envelope_flow import wait_for_mailbox
from tests.edxml_samples import document
from tests.full_store import limit_pages

pytestmark = pytest.mark.usefixtures("no_blocking_loop")

XML = {"Content-Type": "application/xml"}
SENDER, RECIPIENT = "000.00.00.H35", "000.00.01.H35"


@pytest.fixture
def backend() -> str:
    return "embedded"


async def test_a_full_log_answers_503_with_retry_after_and_recovers(api: AgencyClient) -> None:
    log = api.runtime.log
    assert isinstance(log, EmbeddedLog)
    for agency in (SENDER, RECIPIENT):
        await api.token(agency)  # credentials are written to the log: before it is full
    data = document(sender=SENDER, recipients=(RECIPIENT,), padding=20_000)
    await limit_pages(log, 0)
    with capture_logs() as logs:
        for _ in range(3):
            resp = await api.post("/v1/envelopes", data=data, headers=XML)
            assert resp.status == 503, await resp.text()
            assert resp.headers["Content-Type"].startswith("application/problem+json")
            assert int(resp.headers["Retry-After"]) >= 1
            problem = await resp.json()
            assert problem["code"] == "backend-unavailable"
            assert "disk full" in problem["detail"]
        ready = await api.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["checks"]["log"].startswith("disk full")

        await limit_pages(log, None)
        resp = await api.post("/v1/envelopes", data=data, headers=XML)
        assert resp.status == 202, await resp.text()
        ready = await api.get("/readyz")
        assert ready.status == 200, await ready.text()
    [entry] = await wait_for_mailbox(api, "H35.S01")
    assert entry["message_id"] == (await resp.json())["message_id"]
    assert [e["event"] for e in logs if e["log_level"] in ("warning", "error")] == [
        "embedded log: disk full; writes fail until space is freed"
    ]
