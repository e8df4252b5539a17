"""End to end: a real `docbroker serve` process on each backend, driven over HTTP
and through the CLI as an agency system and an administrator would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from broker.cli.client import ApiProblem
from broker.config import load_settings
from broker.core.topics import Topics
from broker.log import open_log
from tests.e2e.conftest import DaemonFactory
from tests.e2e.daemon import Daemon
from tests.edxml_samples import document
from tests.forwarded import assert_forwarded

pytestmark = pytest.mark.e2e


def wait_for_entries(daemon: Daemon, agency: str, count: int, timeout: float = 30) -> list[dict]:
    client = daemon.client()
    deadline = time.monotonic() + timeout
    entries: list[dict] = []
    after = 0
    while time.monotonic() < deadline:
        page = client.inbox(agency, wait=1, limit=1000, after=after)
        entries += page["envelopes"]
        after = page["next_after"]
        if len(entries) >= count:
            return entries
        if not page["envelopes"]:
            time.sleep(0.05)
    raise AssertionError(f"{agency}: {len(entries)} of {count} entries\n{daemon.logs()[-3000:]}")


def send_list_fetch_ack(daemon: Daemon) -> None:
    """One document to two recipients: each lists it, fetches it byte for byte as
    forwarded, acknowledges it, and then has nothing left to list."""
    client = daemon.client()
    data = document(recipients=("000.00.01.H35", "000.00.02.H35"))
    accepted = client.submit(data)
    for agency in ("000.00.01.H35", "000.00.02.H35"):
        (entry,) = wait_for_entries(daemon, agency, 1)
        assert entry["message_id"] == accepted["message_id"]
        fetched = client.fetch(agency, entry["message_id"])
        assert_forwarded(data, fetched.body, sha256=entry["sha256"])
        assert client.ack(agency, entry["message_id"])["acknowledged_at"]
        assert client.inbox(agency)["envelopes"] == []


class TestOneEnvelopeEndToEnd:
    def test_send_list_fetch_ack(self, daemons: DaemonFactory) -> None:
        """An agency submits; each recipient lists, fetches byte for byte, acknowledges."""
        send_list_fetch_ack(daemons())

    def test_not_well_formed_is_refused_and_the_daemon_carries_on(
        self, daemons: DaemonFactory
    ) -> None:
        daemon = daemons()
        client = daemon.client()
        with pytest.raises(ApiProblem) as info:
            client.submit(b"1212<?xml version='1.0'?><edXML/>")
        assert info.value.status == 400 and info.value.code == "not-well-formed"
        assert info.value.problems[0].location.line == 1  # type: ignore[union-attr]
        client.submit(document(recipients=("000.00.03.H35",)))
        wait_for_entries(daemon, "000.00.03.H35", 1)


class TestCommandLine:
    def run(
        self, daemon: Daemon, *args: str, token: str = "", admin: bool = False
    ) -> subprocess.CompletedProcess[bytes]:
        """The CLI as an agency's operator runs it (a URL and a token), or as the
        broker's administrator (the broker's configuration)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
        if admin:
            env.update(daemon.env)
        else:
            env["DOCBROKER_URL"] = daemon.url
            env["DOCBROKER_TOKEN"] = token
        return subprocess.run(
            [sys.executable, "-m", "broker", *args],
            env=env,
            capture_output=True,
            timeout=60,
        )

    def test_reference_client_commands(self, daemons: DaemonFactory, tmp_path: Path) -> None:
        """`docbroker send | inbox | fetch | ack` with their exit statuses."""
        daemon = daemons()
        made = self.run(daemon, "agencies", "token", "create", "000.00.00.H35", admin=True)
        assert made.returncode == 0, made.stderr
        sender = made.stdout.decode().strip()
        assert sender.startswith("dbk_") and b"shown once" in made.stderr
        reader = self.run(daemon, "agencies", "token", "create", "H35.S04", admin=True)
        reader_token = reader.stdout.decode().strip()
        deadline = time.monotonic() + 20  # every instance follows the directory
        while self.run(daemon, "inbox", "--agency", "H35.S04", token=reader_token).returncode:
            assert time.monotonic() < deadline, "the new token never worked"
            time.sleep(0.2)
        good, bad = tmp_path / "good.edxml", tmp_path / "bad.edxml"
        good.write_bytes(document(recipients=("000.00.04.H35",)))
        bad.write_bytes(b"<edXML")
        unauthenticated = self.run(daemon, "send", str(good), token="dbk_nope_nope")
        assert unauthenticated.returncode == 1 and b"unauthenticated" in unauthenticated.stderr
        forged = self.run(daemon, "send", str(good), token=reader_token)
        assert forged.returncode == 1 and b"sender-mismatch" in forged.stderr
        sent = self.run(daemon, "send", str(good), token=sender)
        assert sent.returncode == 0, sent.stderr
        refused = self.run(daemon, "send", str(bad), token=sender)
        assert refused.returncode == 1
        assert b"not-well-formed" in refused.stderr
        wait_for_entries(daemon, "000.00.04.H35", 1)
        as_reader = {"token": reader_token}
        listed = self.run(daemon, "inbox", "--agency", "000.00.04.H35", "--json", **as_reader)
        (entry,) = json.loads(listed.stdout)["envelopes"]
        fetched = self.run(
            daemon, "fetch", "--agency", "000.00.04.H35", entry["message_id"], **as_reader
        )
        assert fetched.returncode == 0
        assert_forwarded(good.read_bytes(), fetched.stdout, sha256=entry["sha256"])
        nosy = self.run(
            daemon, "fetch", "--agency", "000.00.04.H35", entry["message_id"], token=sender
        )
        assert nosy.returncode == 1 and b"forbidden" in nosy.stderr
        acked = self.run(
            daemon, "ack", "--agency", "000.00.04.H35", entry["message_id"], **as_reader
        )
        assert acked.returncode == 0
        missing = self.run(daemon, "fetch", "--agency", "000.00.04.H35", "no-such-id", **as_reader)
        assert missing.returncode == 1 and b"not-found" in missing.stderr
        usage = self.run(daemon, "fetch", "--agency", "000.00.04.H35", **as_reader)
        assert usage.returncode == 2
        listing = self.run(daemon, "agencies", "token", "list", "H35", "--json", admin=True)
        (row,) = json.loads(listing.stdout)
        revoked = self.run(daemon, "agencies", "token", "revoke", "H35", row["id"], admin=True)
        assert revoked.returncode == 0, revoked.stderr
        deadline = time.monotonic() + 20
        while self.run(daemon, "send", str(good), token=sender).returncode != 1:
            assert time.monotonic() < deadline, "the revoked token kept working"
            time.sleep(0.2)


class TestGracefulShutdown:
    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
    def test_accepted_envelopes_survive_a_stop_under_load(
        self, daemons: DaemonFactory, daemon_env: dict[str, str], sig: int
    ) -> None:
        """Stop the daemon while agencies submit: it exits 0, and after a restart
        every envelope that got 202 is in its mailbox exactly once."""
        daemon = daemons()
        accepted: list[str] = []
        stop = threading.Event()

        def submit_until_stopped(worker: int) -> None:
            client = daemon.client()
            i = 0
            while not stop.is_set():
                data = document(recipients=("000.00.07.H35",), document_id=f"D,{worker},{i}")
                try:
                    accepted.append(client.submit(data)["message_id"])
                except Exception:  # the listener went away: expected during shutdown
                    return
                i += 1

        threads = [threading.Thread(target=submit_until_stopped, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        status = daemon.stop(sig)
        stop.set()
        for t in threads:
            t.join(30)
        assert status == 0, daemon.logs()[-3000:]
        assert len(accepted) > 20
        restarted = daemons()
        entries = wait_for_entries(restarted, "000.00.07.H35", len(accepted), timeout=60)
        assert sorted(e["message_id"] for e in entries) == sorted(accepted)
        stopped_order = [e for e in daemon.log_events() if e.get("event") == "docbroker stopped"]
        assert stopped_order[0]["order"][-7:] == [
            "pipeline stopped",
            "retention stopped",
            "statistics view stopped",
            "documents view stopped",
            "mailbox view stopped",
            "state closed",
            "log closed",
        ]
        assert count_mailbox_records(daemon_env) == {m: 1 for m in accepted}


def count_mailbox_records(env: dict[str, str]) -> dict[str, int]:
    """Read the mailbox topic itself (not the deduplicating view): copies per message id."""
    settings = load_settings(None, env)

    async def count() -> dict[str, int]:
        topics = Topics.with_prefix(settings.backend.topic_prefix)
        log = open_log(settings)
        await log.start()
        counts: dict[str, int] = {}
        try:
            async with log.tailer([topics.mailbox], {}) as tailer:
                empty_polls = 0
                while empty_polls < 3:  # everything is committed: read until quiet
                    records = await tailer.poll(0.5, 1000)
                    empty_polls = 0 if records else empty_polls + 1
                    for r in records:
                        mid = r.header_str("message-id")
                        counts[mid] = counts.get(mid, 0) + 1
        finally:
            await log.close()
        return counts

    return asyncio.run(count())
