"""Upgrades: today's docbroker starts on a data folder the previous release made.

The previous release is built from this repository's history (`git archive` of a
known commit into a temporary folder) and run as a real `docbroker serve` with
PYTHONPATH pointing there. It takes documents, delivers them, some are fetched and
acknowledged; it stops. Today's code then starts on the same folder: the log is
upgraded in place (a log line says from which schema to which), a read model of
another version is rebuilt from the log, every document is there in its state, the
audit trail verifies, and new submissions go through. A log file of a newer schema
is refused: one line naming both versions and what to do, exit status 2.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from broker.log.embedded_schema import LATEST
from tests.e2e.daemon import ROOT, Daemon, TokenBook
from tests.e2e.faults import metric
from tests.e2e.test_walking_skeleton import wait_for_entries
from tests.edxml_samples import document
from tests.ledger import audit_verifies

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.parametrize("backend", ["embedded"])]

# The last commit before schema versions and upgrades (the first release's log: schema
# 1, in a meta row). It is on main, so a clone of main (as CI makes) holds it.
PREVIOUS_RELEASE = "697f535849a01ff2c23f4881c7a26970f546f672"

SENDER = "000.00.00.H35"
RECIPIENT = "000.00.07.H35"
DOCS = 4
ACKED = 2


def previous_release(into: Path) -> Path:
    """The previous release's source tree (its packages, schemas inside broker/)."""
    if not (ROOT / ".git").exists():
        pytest.skip("no git repository here: the previous release cannot be built")
    have = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if have.returncode != 0:
        pytest.skip(f"commit {PREVIOUS_RELEASE[:12]} not in this clone (shallow?)")
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE, "broker", "adapters", "schemas"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    (into / "schemas").rename(into / "broker" / "schemas")  # as installed: broker.schemas
    return into


def old_tokens(tree: Path, env: dict[str, str], codes: list[str]) -> dict[str, str]:
    """API tokens written by the previous release's own code (today's would upgrade
    the log before the old daemon ever ran)."""
    script = (
        "import json, sys; from tests.credentials import daemon_tokens; "
        "print(json.dumps(daemon_tokens(json.loads(sys.argv[1]), sys.argv[2:])))"
    )
    tests = tree / "tests"
    if not tests.exists():
        tar = subprocess.run(
            ["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE, "tests"],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            archive.extractall(tree, filter="data")
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(env), *codes],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def schema_of(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0])
    finally:
        conn.close()


class TestUpgradeFromThePreviousRelease:
    def test_todays_release_takes_over_the_previous_ones_data(
        self, tmp_path: Path, daemon_env: dict[str, str]
    ) -> None:
        """Documents, deliveries and acknowledgements made by the previous release are
        all there after the upgrade; the trail verifies; new work goes through."""
        tree = previous_release(tmp_path / "previous")
        data = Path(daemon_env["DOCBROKER_DATA_DIR"])
        tokens = TokenBook(daemon_env)
        old = Daemon(tmp_path / "old", {**daemon_env, "PYTHONPATH": str(tree)}, tokens=tokens)
        old.start()  # it seeds the directory the tokens are written to
        try:
            tokens.tokens.update(old_tokens(tree, daemon_env, [SENDER, RECIPIENT]))
            assert '"schema_from"' not in old.logs()
            client = old.client()
            for i in range(DOCS):
                client.submit(
                    document(recipients=(RECIPIENT,), document_id=f"{SENDER},2026/12/01,{i}")
                )
            entries = wait_for_entries(old, RECIPIENT, DOCS)
            for entry in entries[:ACKED]:
                assert client.fetch(RECIPIENT, entry["message_id"]).status == 200
                client.ack(RECIPIENT, entry["message_id"])
            assert old.stop() == 0, old.logs()[-3000:]
        finally:
            old.kill()
        assert schema_of(data / "log.sqlite") == 1
        view = sqlite3.connect(data / "mailbox.sqlite")  # as if an older view: rebuilt
        view.execute("PRAGMA user_version = 1")
        view.close()

        new = Daemon(tmp_path / "new", daemon_env, tokens=tokens).start()
        try:
            events = {e.get("event"): e for e in new.log_events()}
            upgrade = events["upgrading the embedded log in place"]
            assert (upgrade["schema_from"], upgrade["schema_to"]) == (1, LATEST)
            assert "docbroker backup" in upgrade["hint"]
            assert "read model of another schema version: rebuilt from the log" in events
            assert schema_of(data / "log.sqlite") == LATEST

            client = new.client()
            listed = client.inbox(RECIPIENT, include_acked=True, limit=100)["envelopes"]
            assert sorted(e["message_id"] for e in listed) == sorted(
                e["message_id"] for e in entries
            )
            pending = client.inbox(RECIPIENT, limit=100)["envelopes"]
            assert {e["message_id"] for e in pending} == {e["message_id"] for e in entries[ACKED:]}
            sender = new.client_for(SENDER)
            states = [sender.document(f"{SENDER},2026/12/01,{i}") for i in range(DOCS)]
            assert [len(s["recipients"]) for s in states] == [1] * DOCS  # each delivered

            # the counters schema 2 added hold what the first release wrote
            assert metric(new.url, "docbroker_log_records") >= 2 * DOCS
            assert metric(new.url, "docbroker_log_bytes") > DOCS * len(document())
            assert metric(new.url, "docbroker_read_model_bytes") > 0

            ok, output = audit_verifies(daemon_env)
            assert ok, output

            client.submit(document(recipients=(RECIPIENT,), document_id=f"{SENDER},2026/12/01,new"))
            fresh = wait_for_entries(new, RECIPIENT, DOCS - ACKED + 1)
            assert len({e["message_id"] for e in fresh}) == DOCS - ACKED + 1
            assert new.stop() == 0
        finally:
            new.kill()


class TestTooNew:
    def test_a_log_of_a_newer_schema_is_refused(
        self, tmp_path: Path, daemon_env: dict[str, str]
    ) -> None:
        """`docbroker serve` on a log.sqlite of schema LATEST + 1: one line naming both
        versions and the fix, exit status 2, and the file left as it was."""
        data = Path(daemon_env["DOCBROKER_DATA_DIR"])
        conn = sqlite3.connect(data / "log.sqlite")
        conn.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(LATEST + 1),))
        conn.commit()
        conn.close()
        daemon = Daemon(tmp_path / "d", daemon_env)
        with pytest.raises(RuntimeError, match="exited with 2"):
            daemon.start(timeout=60)
        expected = (
            f"docbroker: schema-too-new: log.sqlite has schema {LATEST + 1}, "
            f"this docbroker knows up to {LATEST}: upgrade docbroker"
        )
        assert expected in daemon.logs()
        assert "Traceback" not in daemon.logs()
        assert schema_of(data / "log.sqlite") == LATEST + 1
