"""End to end, a province at work: real daemon processes on each backend, driven over
HTTP and the CLI; the directory is Lai Châu before the 2025 reform (three levels)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from broker.cli.client import DocbrokerClient
from broker.clock import utc_now
from broker.config import load_settings
from broker.core.topics import Topics
from broker.edxml.model import StatusCode
from broker.edxml.validator import EnvelopeValidator
from broker.log import open_log
from tests.e2e.conftest import DaemonFactory
from tests.edxml_samples import document, status

pytestmark = pytest.mark.e2e

V = EnvelopeValidator(clock=utc_now)
PROVINCE = "000.00.00.H35"  # Ủy ban nhân dân tỉnh Lai Châu (H35)
DISTRICT = "000.00.41.H35"  # Ủy ban nhân dân Thành phố Lai Châu (H35.105)
COMMUNE = "000.20.41.H35"  # Ủy ban nhân dân Phường Quyết Thắng (H35.105.03386)
SO_NOI_VU = "000.00.02.H35"


def inbox(client: DocbrokerClient, agency: str, count: int, timeout: float = 30) -> list[dict]:
    """Wait for `count` pending entries in a mailbox."""
    deadline = time.monotonic() + timeout
    entries: list[dict] = []
    while time.monotonic() < deadline:
        entries = client.inbox(agency, wait=1, limit=1000)["envelopes"]
        if len(entries) >= count:
            return entries
    raise AssertionError(f"{agency}: {len(entries)} of {count} entries: {entries}")


def receive(client: DocbrokerClient, agency: str, count: int = 1) -> list[tuple[dict, bytes]]:
    """Fetch and acknowledge `count` entries, as a QLVB system would."""
    out = []
    for entry in inbox(client, agency, count)[:count]:
        data = client.fetch(agency, entry["message_id"]).body
        client.ack(agency, entry["message_id"])
        out.append((entry, data))
    return out


def statuses(entries: list[tuple[dict, bytes]]) -> list[tuple[str, str]]:
    out = []
    for _, data in entries:
        env = V.check(data)
        out.append((env.status_code.value, env.response_for[0].document_id))
    return sorted(out)


def read_topic(daemon_env: dict[str, str], name: str) -> list:
    settings = load_settings(None, daemon_env)

    async def read() -> list:
        log = open_log(settings)
        await log.start()
        try:
            topic = getattr(Topics.with_prefix(settings.backend.topic_prefix), name)
            from broker.views.audit import read_all

            return await read_all(log, topic)
        finally:
            await log.close()

    return asyncio.run(read())


def mailbox_deliveries(
    daemon_env: dict[str, str], expected: set[tuple[str, str]], timeout: float
) -> Counter[tuple[str, str]]:
    """(document id, recipient) of every document record in `mailbox`, counted, once all
    of `expected` are there or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        deliveries = Counter(
            (rec.header_str("document-id"), rec.header_str("recipient"))
            for rec in read_topic(daemon_env, "mailbox")
            if rec.header_str("kind") == "document"
        )
        if set(deliveries) >= expected or time.monotonic() > deadline:
            return deliveries
        time.sleep(2)


def cli(daemon_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
    env.update(daemon_env)
    return subprocess.run(
        [sys.executable, "-m", "broker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


class TestProvince:
    def test_province_to_district_to_commune_and_back(self, daemons: DaemonFactory) -> None:
        """A province directive goes down two levels; each level acknowledges (status 01
        back) and answers with its own statuses, which travel back up."""
        client = daemons().client()
        doc_a = "000.00.00.H35,2026/11/20,101/UBND-VP"
        doc_b = "000.00.41.H35,2026/11/21,55/UBND"
        client.submit(document(sender=PROVINCE, recipients=(DISTRICT,), document_id=doc_a))
        ((_, got_a),) = receive(client, DISTRICT)  # the district acknowledges: 01 to the province
        assert V.check(got_a).document_id == doc_a
        client.submit(document(sender=DISTRICT, recipients=(COMMUNE,), document_id=doc_b))
        ((_, got_b),) = receive(client, COMMUNE)
        assert V.check(got_b).sender_id == DISTRICT
        client.submit(status(sender=COMMUNE, answers=DISTRICT, document_id=doc_b, code="03"))
        client.submit(status(sender=DISTRICT, answers=PROVINCE, document_id=doc_a, code="06"))
        district_statuses = statuses(receive(client, DISTRICT, 2))
        assert district_statuses == [("01", doc_b), ("03", doc_b)]
        province_statuses = statuses(receive(client, PROVINCE, 2))
        assert province_statuses == [("01", doc_a), ("06", doc_a)]

    def test_unknown_recipient_is_refused_with_status_02_while_others_receive(
        self, daemons: DaemonFactory
    ) -> None:
        client = daemons().client()
        doc = "000.00.00.H35,2026/11/20,102/UBND-VP"
        client.submit(
            document(
                sender=PROVINCE, recipients=(SO_NOI_VU, "999.99.99.X99", DISTRICT), document_id=doc
            )
        )
        assert len(inbox(client, SO_NOI_VU, 1)) == 1
        assert len(inbox(client, DISTRICT, 1)) == 1
        ((_, data),) = receive(client, PROVINCE)
        env = V.check(data)
        assert env.status_code is StatusCode.REFUSED
        assert env.response_for[0].document_id == doc
        assert "999.99.99.X99" in env.status_description

    def test_a_resent_document_is_answered_not_taken_twice(
        self, daemons: DaemonFactory, daemon_env: dict[str, str]
    ) -> None:
        """A QLVB system that resends a document (it missed the answer) gets the first
        message id back; the recipient gets it once. (Two copies racing through the
        door are refused by the pipeline as duplicate-document: tests/unit.)"""
        client = daemons().client()
        data = document(
            sender=PROVINCE,
            recipients=(SO_NOI_VU,),
            document_id="000.00.00.H35,2026/11/20,103/UBND-VP",
        )
        first = client.submit(data)
        assert not first["duplicate"]
        assert len(inbox(client, SO_NOI_VU, 1)) == 1
        deadline = time.monotonic() + 20
        while True:  # the door knows it once the pipeline has committed it
            again = client.submit(data)
            if again["duplicate"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert again["duplicate"] and again["message_id"] == first["message_id"]
        time.sleep(1.0)
        assert len(client.inbox(SO_NOI_VU)["envelopes"]) == 1, "the resend was not delivered"

    def test_outside_the_province_goes_upstream(
        self, daemons: DaemonFactory, daemon_env: dict[str, str]
    ) -> None:
        client = daemons().client()
        client.submit(
            document(
                sender=PROVINCE,
                recipients=("000.00.00.G22", SO_NOI_VU),
                document_id="000.00.00.H35,2026/11/20,104/UBND-VP",
            )
        )
        inbox(client, SO_NOI_VU, 1)
        deadline = time.monotonic() + 20
        upstream: list = []
        while not upstream and time.monotonic() < deadline:
            upstream = read_topic(daemon_env, "upstream")
        (record,) = upstream
        assert record.key == PROVINCE.encode()
        assert record.header_str("upstream-requested") == '["000.00.00.G22"]'
        assert V.check(record.value).trace[-1].organ_id == "000.99.99.H35"

    def test_trace_and_audit(
        self, daemons: DaemonFactory, daemon_env: dict[str, str], backend: str
    ) -> None:
        """The life of a document across recipients, and the chains checked; on the
        embedded backend an event changed behind docbroker's back is found."""
        daemon = daemons()
        client = daemon.client()
        doc = "000.00.00.H35,2026/11/20,105/UBND-VP"
        client.submit(document(sender=PROVINCE, recipients=(SO_NOI_VU, DISTRICT), document_id=doc))
        receive(client, SO_NOI_VU)
        inbox(client, PROVINCE, 1)  # the status 01 arrived: every event is written
        traced = cli(daemon_env, "trace", doc)
        assert traced.returncode == 0, traced.stderr
        text = traced.stdout
        for words in (
            "accepted from 000.00.00.H35",
            "routed to H35.S02 (mailbox)",
            "routed to H35.105 (mailbox)",
            "delivered by H35.S02",
            "acknowledged by H35.S02",
            "status-emitted 01 to H35",
        ):
            assert words in text, text
        events = json.loads(cli(daemon_env, "trace", doc, "--json").stdout)
        assert len({e["chain"] for e in events}) >= 2  # inbound and receipts chains
        verified = cli(daemon_env, "audit", "verify")
        assert verified.returncode == 0 and "every chain is intact" in verified.stdout
        if backend != "embedded":
            return
        daemon.stop()
        db = sqlite3.connect(Path(daemon_env["DOCBROKER_DATA_DIR"]) / "log.sqlite")
        topic = Topics.with_prefix(daemon_env["DOCBROKER_BACKEND_TOPIC_PREFIX"]).events
        rowid, value = db.execute(
            "SELECT id, value FROM records WHERE topic = ? ORDER BY id LIMIT 1", (topic,)
        ).fetchone()
        db.execute(
            "UPDATE records SET value = ? WHERE id = ?",
            (value.replace(b"000.00.00.H35", b"000.00.00.H99", 1), rowid),
        )
        db.commit()
        db.close()
        broken = cli(daemon_env, "audit", "verify")
        assert broken.returncode == 1 and "BREAK in chain" in broken.stdout
