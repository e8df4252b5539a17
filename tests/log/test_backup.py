"""`docbroker backup` and `restore` in process, and the embedded log's online copy
(broker.log.snapshot) while another connection writes to the log."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.cli import backup as backup_cli
from broker.cli import cli
from broker.config import load_settings
from broker.core.logrecords import NewRecord, TopicPartition
from broker.core.topics import Topics
from broker.log import open_log
from broker.log.embedded import EmbeddedLog
from broker.log.snapshot import snapshot
from broker.log.topics import topic_specs
from tests.kafka_broker import KafkaBroker
from tests.ledger import end_offsets
from tests.pki import install_keys


def invoke(*args: str, env: dict[str, str]):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def make_log(data_dir: Path, records: int = 20, value: bytes = b"x" * 100) -> dict[str, str]:
    """An embedded log with `records` inbound records, the pipeline's offset committed
    past the first half, and a member that heartbeated (as a daemon leaves it)."""
    env = {"DOCBROKER_DATA_DIR": str(data_dir), "DOCBROKER_BACKEND_PARTITIONS": "2"}
    settings = load_settings(None, env)
    topics = Topics.with_prefix(settings.backend.topic_prefix)

    async def fill() -> None:
        log = EmbeddedLog(settings.embedded_path)
        await log.start()
        try:
            await log.ensure_topics(topic_specs(settings, topics))
            await log.append([NewRecord(topics.inbound, value, partition=0)] * records)
            async with log.group_consumer("docbroker.pipeline", [topics.inbound]) as consumer:
                await consumer.poll(1.0, 10)
                await consumer.commit(TopicPartition(topics.inbound, 0), records // 2)
        finally:
            await log.close()

    asyncio.run(fill())
    with closing(sqlite3.connect(settings.embedded_path)) as conn, conn:
        conn.execute("INSERT INTO group_members VALUES ('docbroker.pipeline', 'gone', 1)")
    return env


class TestOnlineCopy:
    def test_a_copy_taken_while_another_connection_writes_is_one_snapshot(
        self, tmp_path: Path
    ) -> None:
        """Small steps, a writer committing all along: the copy still ends (it does not
        restart at each commit), and its heads match its records, as in one
        transaction."""
        env = make_log(tmp_path / "data", records=2000, value=os.urandom(500))
        source = Path(env["DOCBROKER_DATA_DIR"]) / "log.sqlite"
        stop, written = threading.Event(), [0]

        def write() -> None:
            conn = sqlite3.connect(source, isolation_level=None, timeout=30)
            while not stop.is_set():
                conn.execute("BEGIN IMMEDIATE")
                (nxt,) = conn.execute(
                    "SELECT next_offset FROM heads WHERE partition = 0 AND topic LIKE '%inbound'"
                ).fetchone()
                conn.execute(
                    "INSERT INTO records(topic, partition, offset, value, headers, ts) "
                    "VALUES ('docbroker.inbound', 0, ?, ?, x'', 0)",
                    (nxt, os.urandom(500)),
                )
                conn.execute(
                    "UPDATE heads SET next_offset = ? WHERE topic = 'docbroker.inbound' "
                    "AND partition = 0",
                    (nxt + 1,),
                )
                conn.execute("COMMIT")
                written[0] += 1
            conn.close()

        writer = threading.Thread(target=write)
        writer.start()
        steps: list[tuple[int, int]] = []
        try:
            snap = snapshot(
                source, tmp_path / "copy.sqlite", progress=lambda d, t: steps.append((d, t)), step=4
            )
        finally:
            stop.set()
            writer.join()
        assert written[0] > 0 and len(steps) > 10
        assert steps[-1][0] == steps[-1][1] == snap.pages * snap.page_size
        with closing(sqlite3.connect(tmp_path / "copy.sqlite")) as copy:
            (count,) = copy.execute(
                "SELECT count(*) FROM records WHERE topic = 'docbroker.inbound' AND partition = 0"
            ).fetchone()
            mode = copy.execute("PRAGMA journal_mode").fetchone()
            members = copy.execute("SELECT count(*) FROM group_members").fetchone()
            owners = copy.execute("SELECT member_id FROM partition_owners").fetchall()
        assert snap.end_offsets["docbroker.inbound"][0] == count >= 2000
        assert snap.group_offsets == {"docbroker.pipeline": {"docbroker.inbound": {0: 1000}}}
        # Self-contained, and no member of the processes that ran.
        assert mode == ("delete",) and members == (0,)
        assert owners and all(m is None for (m,) in owners)
        assert not (tmp_path / "copy.sqlite-wal").exists()

    def test_no_log_is_an_environment_error(self, tmp_path: Path) -> None:
        """A backup of a log that is not there says so (and creates nothing)."""
        result = invoke("backup", str(tmp_path / "b"), env={"DOCBROKER_DATA_DIR": str(tmp_path)})
        assert result.exit_code == 2
        assert "backend-unavailable: no embedded log at" in result.output
        assert not (tmp_path / "log.sqlite").exists()


@pytest.fixture
def deployment(tmp_path: Path) -> dict[str, str]:
    data = tmp_path / "data"
    env = make_log(data)
    install_keys(data)
    (data / "mailbox.sqlite").write_bytes(b"a read model")
    config = tmp_path / "docbroker.toml"
    config.write_text(f'data_dir = "{data}"\n')
    return {**env, "DOCBROKER_CONFIG": str(config)}


class TestBackupCommand:
    def test_backup_holds_the_log_keys_config_and_manifest(
        self, tmp_path: Path, deployment: dict[str, str]
    ) -> None:
        """The log, every key (private ones 0600 though they were 0644), the
        configuration; not the read models; the manifest says what, with offsets."""
        target = tmp_path / "backup"
        result = invoke("backup", str(target), "--json", env=deployment)
        assert result.exit_code == 0, result.output
        body = json.loads(result.output)
        manifest = body["manifest"]
        paths = {f["path"]: f for f in manifest["files"]}
        assert set(paths) == {
            "log.sqlite",
            "config/docbroker.toml",
            *(f"keys/{n}" for n in ("broker.cert.pem", "broker.key.pem", "ca.cert.pem")),
            "keys/ca.crl.pem",
            *(f"keys/{n}" for n in ("sdk-master.key", "tls.cert.pem", "tls.key.pem")),
        }
        assert sorted(p.name for p in target.iterdir()) == [
            "MANIFEST.json", "config", "keys", "log.sqlite"
        ]  # fmt: skip
        assert (target / "keys" / "broker.key.pem").stat().st_mode & 0o777 == 0o600
        assert (target / "keys" / "ca.cert.pem").stat().st_mode & 0o777 == 0o644
        assert paths["keys/broker.key.pem"]["mode"] == "0600"
        assert manifest["end_offsets"]["docbroker.inbound"] == {"0": 20, "1": 0}
        assert manifest["group_offsets"]["docbroker.pipeline"] == {"docbroker.inbound": {"0": 10}}
        assert manifest["backend"] == "embedded" and manifest["docbroker_version"]
        assert any("read models" in n for n in manifest["notes"])
        assert body["bytes"] == sum(f["size"] for f in manifest["files"])

    def test_a_non_empty_target_is_refused(
        self, tmp_path: Path, deployment: dict[str, str]
    ) -> None:
        target = tmp_path / "backup"
        target.mkdir()
        (target / "old").write_text("x")
        result = invoke("backup", str(target), env=deployment)
        assert result.exit_code == 2
        assert f"target-not-empty: {target} is not empty" in result.output
        assert sorted(p.name for p in target.iterdir()) == ["old"]

    def test_key_files_configured_elsewhere_are_backed_up(
        self, tmp_path: Path, deployment: dict[str, str]
    ) -> None:
        outside = tmp_path / "etc" / "broker.key.pem"
        outside.parent.mkdir()
        outside.write_bytes(
            (Path(deployment["DOCBROKER_DATA_DIR"]) / "keys/broker.key.pem").read_bytes()
        )
        env = {**deployment, "DOCBROKER_KEYS_PRIVATE_KEY": str(outside)}
        result = invoke("backup", str(tmp_path / "b"), "--json", env=env)
        assert result.exit_code == 0, result.output
        (elsewhere,) = [
            f for f in json.loads(result.output)["manifest"]["files"] if f["role"] == "elsewhere"
        ]
        assert elsewhere["path"] == "elsewhere/1-broker.key.pem" and elsewhere["mode"] == "0600"
        assert elsewhere["origin"] == str(outside)

    def test_a_large_log_shows_the_progress_of_its_copy(
        self, tmp_path: Path, deployment: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(backup_cli, "LARGE", 0)
        result = invoke("backup", str(tmp_path / "b"), env=deployment)
        assert result.exit_code == 0
        assert "log.sqlite: 100% of 0 MB copied" in result.stderr

    @pytest.mark.kafka
    def test_kafka_backs_up_keys_config_and_offsets(
        self,
        tmp_path: Path,
        deployment: dict[str, str],
        kafka_broker: KafkaBroker,
        unique_prefix: str,
    ) -> None:
        """On the suite's real Kafka: no log file; the topics' end offsets as the broker
        reports them, and a note that the topics are replicated, not copied."""
        env = {
            **deployment,
            "DOCBROKER_BACKEND_TYPE": "kafka",
            "DOCBROKER_BACKEND_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
            "DOCBROKER_BACKEND_TOPIC_PREFIX": unique_prefix,
            "DOCBROKER_BACKEND_PARTITIONS": "2",
        }
        settings = load_settings(None, env)
        inbound = Topics.with_prefix(unique_prefix).inbound

        async def append() -> None:
            log = open_log(settings)
            await log.start()
            try:
                await log.ensure_topics(topic_specs(settings, Topics.with_prefix(unique_prefix)))
                await log.append([NewRecord(inbound, b"r", key=b"a") for _ in range(7)])
            finally:
                await log.close()

        asyncio.run(append())
        ends = {str(p): n for p, n in end_offsets(env, "inbound").items()}
        result = invoke("backup", str(tmp_path / "b"), "--json", env=env)
        assert result.exit_code == 0, result.output
        manifest = json.loads(result.output)["manifest"]
        assert manifest["backend"] == "kafka"
        assert manifest["end_offsets"][inbound] == ends and sum(ends.values()) >= 7
        assert "log.sqlite" not in {f["path"] for f in manifest["files"]}
        assert {f["path"] for f in manifest["files"]} >= {"keys/broker.key.pem"}
        assert any("replicated by the cluster, not copied" in n for n in manifest["notes"])
        assert not (tmp_path / "b" / "log.sqlite").exists()


class TestRestoreCommand:
    @pytest.fixture
    def backed_up(self, tmp_path: Path, deployment: dict[str, str]) -> Path:
        target = tmp_path / "backup"
        assert invoke("backup", str(target), env=deployment).exit_code == 0
        return target

    def test_restore_puts_the_log_and_keys_in_place(
        self, tmp_path: Path, backed_up: Path, deployment: dict[str, str]
    ) -> None:
        data = tmp_path / "restored"
        result = invoke("restore", str(backed_up), str(data), env={})
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in data.iterdir()) == ["config", "keys", "log.sqlite"]
        old = Path(deployment["DOCBROKER_DATA_DIR"])
        for name in ("broker.key.pem", "ca.cert.pem", "sdk-master.key"):
            assert (data / "keys" / name).read_bytes() == (old / "keys" / name).read_bytes()
        assert (data / "keys" / "broker.key.pem").stat().st_mode & 0o777 == 0o600
        assert (data / "log.sqlite").stat().st_mode & 0o777 == 0o600
        with closing(sqlite3.connect(data / "log.sqlite")) as conn:
            assert conn.execute("SELECT count(*) FROM records").fetchone()[0] >= 20
        assert "it rebuilds mailbox.sqlite and documents.sqlite from the log" in result.output

    def test_a_changed_byte_is_named(self, tmp_path: Path, backed_up: Path) -> None:
        log = backed_up / "log.sqlite"
        data = bytearray(log.read_bytes())
        data[len(data) // 2] ^= 1
        log.write_bytes(bytes(data))
        result = invoke("restore", str(backed_up), str(tmp_path / "r"), env={})
        assert result.exit_code == 1
        assert "backup-damaged: log.sqlite: changed since the backup" in result.output
        assert not any((tmp_path / "r").iterdir())  # nothing restored

    def test_a_missing_file_is_named(self, tmp_path: Path, backed_up: Path) -> None:
        (backed_up / "keys" / "sdk-master.key").unlink()
        result = invoke("restore", str(backed_up), str(tmp_path / "r"), env={})
        assert result.exit_code == 1
        assert "backup-damaged: keys/sdk-master.key: missing from the backup" in result.output

    def test_a_backup_without_manifest_is_refused(self, tmp_path: Path, backed_up: Path) -> None:
        (backed_up / "MANIFEST.json").unlink()
        result = invoke("restore", str(backed_up), str(tmp_path / "r"), env={})
        assert result.exit_code == 1 and "backup-damaged: no MANIFEST.json" in result.output

    def test_a_non_empty_data_dir_is_refused(self, tmp_path: Path, backed_up: Path) -> None:
        data = tmp_path / "data-in-use"
        data.mkdir()
        (data / "log.sqlite").write_bytes(b"the log of a deployment")
        result = invoke("restore", str(backed_up), str(data), env={})
        assert result.exit_code == 2 and "target-not-empty" in result.output
        assert (data / "log.sqlite").read_bytes() == b"the log of a deployment"
