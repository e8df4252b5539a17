"""The walking skeleton over HTTP, in process: submit -> mailbox -> fetch -> ack."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from dataclasses import replace

import pytest

from adapters.http_api import RUNTIME
from broker.core.logrecords import NewRecord, Record
from broker.log.interface import DurableLog
from broker.state.directory import put_agencies
from tests.api.conftest import AgencyClient
from tests.edxml_samples import document, full_document, hop, status
from tests.forwarded import assert_forwarded

XML = {"Content-Type": "application/xml"}


async def wait_for_mailbox(api: AgencyClient, agency: str, count: int = 1) -> list[dict]:
    """Long-poll until `count` entries are listed."""
    entries: list[dict] = []
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        resp = await api.get(f"/v1/mailboxes/{agency}/envelopes", params={"wait": "1"})
        assert resp.status == 200
        entries = (await resp.json())["envelopes"]
        if len(entries) >= count:
            return entries
        await asyncio.sleep(0.05)
    raise AssertionError(f"{agency}: {len(entries)} entries, wanted {count}")


pytestmark = pytest.mark.usefixtures("no_blocking_loop")


async def first_records(log: DurableLog, topic: str, timeout: float = 20) -> list[Record]:
    """The first records to appear in `topic` (all of one poll)."""
    async with log.tailer([topic], {}) as tailer:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            found = await tailer.poll(0.5, 10)
            if found:
                return list(found)
    return []


class TestSubmitAndDeliver:
    async def test_envelope_reaches_every_recipient_byte_for_byte(self, api: AgencyClient) -> None:
        data = document(recipients=("000.00.01.H35", "000.00.02.H35"))
        resp = await api.post("/v1/envelopes", data=data, headers=XML)
        assert resp.status == 202, await resp.text()
        accepted = await resp.json()
        assert accepted["recipients"] == ["000.00.01.H35", "000.00.02.H35"]
        document_path = "/v1/documents/" + urllib.parse.quote(accepted["document_id"], safe="")
        assert resp.headers["Location"] == document_path
        for agency in accepted["recipients"]:
            (entry,) = await wait_for_mailbox(api, agency)
            assert entry["message_id"] == accepted["message_id"]
            got = await api.get(f"/v1/mailboxes/{agency}/envelopes/{entry['message_id']}")
            assert got.status == 200
            assert_forwarded(data, await got.read(), sha256=entry["sha256"])
            assert got.headers["Docbroker-Document-Id"] == accepted["document_id"]
            assert got.headers["Repr-Digest"].startswith("sha-256=:")

    async def test_status_package_goes_to_the_answered_agency(self, api: AgencyClient) -> None:
        resp = await api.post("/v1/envelopes", data=status(answers="000.00.00.H35"), headers=XML)
        assert resp.status == 202
        (entry,) = await wait_for_mailbox(api, "000.00.00.H35")
        assert entry["kind"] == "status"

    async def test_acknowledge_is_idempotent_and_empties_the_pending_list(
        self, api: AgencyClient
    ) -> None:
        await api.post("/v1/envelopes", data=document(recipients=("000.00.08.H35",)), headers=XML)
        (entry,) = await wait_for_mailbox(api, "000.00.08.H35")
        url = f"/v1/mailboxes/000.00.08.H35/envelopes/{entry['message_id']}/ack"
        first = await (await api.post(url)).json()
        second = await (await api.post(url)).json()
        assert first["acknowledged_at"] and first == second
        pending = await (await api.get("/v1/mailboxes/000.00.08.H35/envelopes")).json()
        assert pending["envelopes"] == []
        everything = await (await api.get("/v1/mailboxes/000.00.08.H35/envelopes?state=all")).json()
        assert everything["envelopes"][0]["acknowledged_at"] == first["acknowledged_at"]

    async def test_fresh_mail_is_fetched_without_reading_the_log(
        self, api: AgencyClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """What just arrived is fetched from the mailbox view's memory (a read by
        position is a round trip, and on Kafka an instance's reads wait in one line);
        once acknowledged, the view lets it go and a fetch reads the log: the same bytes."""
        log = api.runtime.log
        reads: list[tuple[str, int, int]] = []
        read_at = log.read_at

        async def counted(topic: str, partition: int, offset: int) -> Record | None:
            reads.append((topic, partition, offset))
            return await read_at(topic, partition, offset)

        monkeypatch.setattr(log, "read_at", counted)
        agency = "000.00.10.H35"
        await api.post("/v1/envelopes", data=document(recipients=(agency,)), headers=XML)
        (entry,) = await wait_for_mailbox(api, agency)
        url = f"/v1/mailboxes/{agency}/envelopes/{entry['message_id']}"
        fresh = await api.get(url)
        assert fresh.status == 200
        body = await fresh.read()
        assert reads == []
        assert (await api.post(f"{url}/ack")).status == 200
        again = await api.get(url)
        assert again.status == 200
        assert await again.read() == body
        assert len(reads) == 1

    async def test_long_poll_returns_when_an_envelope_arrives(self, api: AgencyClient) -> None:
        poll = asyncio.create_task(
            api.get("/v1/mailboxes/000.00.09.H35/envelopes", params={"wait": "20"})
        )
        await asyncio.sleep(0.3)
        assert not poll.done()
        await api.post("/v1/envelopes", data=document(recipients=("000.00.09.H35",)), headers=XML)
        resp = await asyncio.wait_for(poll, 15)
        assert len((await resp.json())["envelopes"]) == 1

    async def test_cursor_pages_through_the_mailbox(self, api: AgencyClient) -> None:
        for i in range(5):
            data = document(recipients=("000.00.05.H35",), document_id=f"D,{i}")
            assert (await api.post("/v1/envelopes", data=data, headers=XML)).status == 202
        await wait_for_mailbox(api, "000.00.05.H35", 5)
        page1 = await (await api.get("/v1/mailboxes/000.00.05.H35/envelopes?limit=2")).json()
        page2 = await (
            await api.get(
                f"/v1/mailboxes/000.00.05.H35/envelopes?limit=10&after={page1['next_after']}"
            )
        ).json()
        ids = [e["document_id"] for e in page1["envelopes"] + page2["envelopes"]]
        assert sorted(ids) == [f"D,{i}" for i in range(5)]


IRREGULAR = full_document(trace=hop("null"), extra_header="<edXML:Vendor>x</edXML:Vendor>")


async def wait_for_metric(api: AgencyClient, line: str, timeout: float = 10) -> None:
    """The pipeline counts after its commit: a moment after the mailbox shows it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while line not in await (await api.get("/metrics")).text():
        assert asyncio.get_running_loop().time() < deadline, f"no {line!r} in /metrics"
        await asyncio.sleep(0.05)


class TestWarnings:
    async def test_irregular_package_is_accepted_with_its_warnings(self, api: AgencyClient) -> None:
        resp = await api.post("/v1/envelopes", data=IRREGULAR, headers=XML)
        assert resp.status == 202, await resp.text()
        warnings = (await resp.json())["warnings"]
        assert [(w["code"], w["location"]["path"]) for w in warnings] == [
            ("unknown-element", "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/Vendor"),
            ("trace-organ-id-missing", "/edXML/edXMLEnvelope/edXMLHeader/TraceHeaderList/"
             "TraceHeader/OrganId"),
        ]  # fmt: skip
        assert all(w["location"]["line"] and w["message"] for w in warnings)
        for agency in ("000.00.01.H35", "000.00.02.H35"):
            await wait_for_mailbox(api, agency)
        await wait_for_metric(api, 'docbroker_envelope_warnings_total{code="unknown-element"} 1.0')
        metrics = await (await api.get("/metrics")).text()
        assert 'docbroker_envelope_warnings_total{code="trace-organ-id-missing"} 1.0' in metrics
        regular = await api.post("/v1/envelopes", data=document(), headers=XML)
        assert (await regular.json())["warnings"] == []

    async def test_a_strict_sender_is_refused_at_the_door(self, api: AgencyClient) -> None:
        runtime = api.server.app[RUNTIME]
        sender = runtime.directory.current.find("000.00.00.H35")
        assert sender is not None
        await put_agencies(
            runtime.log, runtime.topics.directory, [replace(sender, strict=True)], "test"
        )
        await runtime.directory.follower.caught_up()
        resp = await api.post("/v1/envelopes", data=IRREGULAR, headers=XML)
        assert resp.status == 422
        body = await resp.json()
        assert body["code"] == "unknown-element"
        assert [p["code"] for p in body["problems"]] == [
            "unknown-element",
            "trace-organ-id-missing",
        ]
        assert body["problems"][1]["location"]["path"].endswith("/TraceHeader/OrganId")
        assert (await api.post("/v1/envelopes", data=document(), headers=XML)).status == 202


class TestRefusals:
    async def test_not_well_formed_gets_a_located_problem_and_the_daemon_carries_on(
        self, api: AgencyClient
    ) -> None:
        resp = await api.post("/v1/envelopes", data=b"<edXML>\n<broken", headers=XML)
        assert resp.status == 400
        assert resp.content_type == "application/problem+json"
        body = await resp.json()
        assert body["code"] == "not-well-formed"
        assert body["problems"][0]["location"]["line"] == 2
        assert (await api.post("/v1/envelopes", data=document(), headers=XML)).status == 202

    async def test_refusal_is_kept_in_the_rejected_topic(self, api: AgencyClient) -> None:
        runtime = api.server.app[RUNTIME]
        resp = await api.post("/v1/envelopes", data=b"<!DOCTYPE x><x/>", headers=XML)
        assert (await resp.json())["code"] == "dtd-forbidden"
        message_id = resp.headers["Docbroker-Message-Id"]
        found = await first_records(runtime.log, runtime.topics.rejected)
        assert [r.header_str("message-id") for r in found] == [message_id]
        assert found[0].value == b"<!DOCTYPE x><x/>"

    async def test_missing_recipient_is_unprocessable(self, api: AgencyClient) -> None:
        resp = await api.post("/v1/envelopes", data=document(recipients=()), headers=XML)
        assert resp.status == 422
        assert (await resp.json())["code"] == "missing-field"

    async def test_rule_violations_are_answered_with_their_codes(self, api: AgencyClient) -> None:
        resp = await api.post("/v1/envelopes", data=status(code="42"), headers=XML)
        assert resp.status == 422
        body = await resp.json()
        assert body["code"] == "unknown-status-code"
        assert body["problems"][0]["location"]["path"].endswith("/StatusCode")
        resp = await api.post("/v1/envelopes", data=document(recipients=("A", "A")), headers=XML)
        assert (await resp.json())["code"] == "duplicate-recipient"

    async def test_the_pipeline_validates_what_reaches_inbound(self, api: AgencyClient) -> None:
        """Input that did not come through the HTTP check (a spool folder, the national
        axis) is validated by the pipeline and dead-lettered with its problems."""
        runtime = api.server.app[RUNTIME]
        bad = document(recipients=("000.00.06.H35", "000.00.06.H35"))
        await runtime.log.append(
            [
                NewRecord(
                    runtime.topics.inbound, bad, key=b"X", headers=(("message-id", b"m-direct"),)
                )
            ]
        )
        found = await first_records(runtime.log, runtime.topics.rejected)
        (dead,) = found
        assert dead.header_str("message-id") == "m-direct"
        assert dead.header_str("stage") == "pipeline"
        assert json.loads(dead.header_str("problems"))[0]["code"] == "duplicate-recipient"
        listing = await (await api.get("/v1/mailboxes/000.00.06.H35/envelopes")).json()
        assert listing["envelopes"] == []

    async def test_too_large(self, api: AgencyClient) -> None:
        resp = await api.post("/v1/envelopes", data=document(padding=70 * 1024), headers=XML)
        assert resp.status == 413
        assert (await resp.json())["code"] == "too-large"

    async def test_wrong_media_type(self, api: AgencyClient) -> None:
        resp = await api.post(
            "/v1/envelopes", data=b"{}", headers={"Content-Type": "application/json"}
        )
        assert resp.status == 415
        assert (await resp.json())["code"] == "unsupported-media-type"

    async def test_unknown_message_and_bad_parameters(self, api: AgencyClient) -> None:
        missing = await api.get("/v1/mailboxes/000.00.01.H35/envelopes/nope")
        assert missing.status == 404 and (await missing.json())["code"] == "not-found"
        bad = await api.get("/v1/mailboxes/000.00.01.H35/envelopes?limit=0")
        assert bad.status == 400 and (await bad.json())["code"] == "bad-request"
        bad_code = await api.get(
            "/v1/mailboxes/%20x/envelopes", headers=await api.auth("000.00.01.H35")
        )
        assert bad_code.status == 400
        route = await api.get("/v1/nowhere")
        assert route.status == 404 and route.content_type == "application/problem+json"
        method = await api.delete("/v1/envelopes")
        assert method.status == 405 and (await method.json())["code"] == "method-not-allowed"


class TestOperations:
    async def test_health_readiness_metrics_openapi(self, api: AgencyClient) -> None:
        assert (await (await api.get("/healthz")).json()) == {"status": "ok"}
        ready = await api.get("/readyz")
        assert ready.status == 200
        assert (await ready.json())["checks"] == {
            "log": "ok",
            "keys": "ok",
            "revocation": "ok",
            "directory": "ok (150 agencies)",
            "mailbox_view": "ok",
            "documents_view": "ok",
            "statistics_view": "ok",
            "pipeline": "ok",
        }
        await api.post("/v1/envelopes", data=document(), headers=XML)
        await wait_for_mailbox(api, "000.00.01.H35")
        metrics = await (await api.get("/metrics")).text()
        assert "docbroker_envelopes_accepted_total 1.0" in metrics
        assert (
            'docbroker_http_requests_total{method="POST",route="/v1/envelopes",status="202"}'
            in metrics
        )
        assert 'docbroker_certificate_expiry_seconds{role="broker"' in metrics
        crl = api.runtime.settings.keys_dir / "ca.crl.pem"
        assert f'docbroker_crl_file_failing{{file="{crl}"}} 0.0' in metrics
        assert 'docbroker_sender_signatures_total{outcome="absent",policy="optional"}' in metrics
        spec = await api.get("/openapi.yaml")
        assert spec.status == 200 and b"openapi: 3.1.0" in await spec.read()
