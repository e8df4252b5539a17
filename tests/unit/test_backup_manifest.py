"""A backup's manifest (broker.core.backup): built, read back, and compared with what a
backup folder holds."""

from __future__ import annotations

import json

import pytest

from broker.core.backup import (
    BackedUpFile,
    Manifest,
    backed_up_mode,
    damaged,
    is_secret,
    safe_path,
    topic_summary,
    unlisted,
)
from broker.core.errors import InputRefused

A, B, C = "a" * 64, "b" * 64, "c" * 64


def manifest(**kw: object) -> Manifest:
    files = (
        BackedUpFile("log.sqlite", "log", A, 4096, 0o600, "/srv/docbroker/log.sqlite"),
        BackedUpFile("keys/broker.key.pem", "keys", B, 1704, 0o600, "/srv/k/broker.key.pem"),
        BackedUpFile("keys/ca.cert.pem", "keys", C, 1200, 0o644, "/srv/k/ca.cert.pem"),
    )
    base = {
        "docbroker_version": "0.1.0",
        "created_at": "2026-11-24T08:00:00+00:00",
        "backend": "embedded",
        "topic_prefix": "docbroker.",
        "files": files,
        "end_offsets": {"docbroker.inbound": {0: 10, 1: 5}, "docbroker.mailbox": {0: 30}},
        "group_offsets": {"docbroker.pipeline": {"docbroker.inbound": {0: 9, 1: 5}}},
        "notes": ("read models are not backed up",),
    }
    return Manifest(**{**base, **kw})  # type: ignore[arg-type]


class TestManifest:
    def test_round_trip(self) -> None:
        """What is written is what is read back: files, offsets (partitions as numbers
        again), groups, notes."""
        m = manifest()
        assert Manifest.from_json(m.to_json()) == m

    def test_json_says_what_a_person_reads(self) -> None:
        """Modes in octal, partitions as keys, the version, the time and the backend."""
        body = json.loads(manifest().to_json())
        assert body["files"][1] == {
            "path": "keys/broker.key.pem",
            "role": "keys",
            "sha256": B,
            "size": 1704,
            "mode": "0600",
            "origin": "/srv/k/broker.key.pem",
        }
        assert body["end_offsets"]["docbroker.inbound"] == {"0": 10, "1": 5}
        assert (body["docbroker_version"], body["backend"], body["format"]) == (
            "0.1.0",
            "embedded",
            1,
        )

    def test_totals(self) -> None:
        m = manifest()
        assert m.size == 4096 + 1704 + 1200
        assert m.records_per_topic() == {"docbroker.inbound": 15, "docbroker.mailbox": 30}
        assert topic_summary(m) == "inbound 15, mailbox 30"
        assert m.log is not None and m.log.path == "log.sqlite"

    @pytest.mark.parametrize(
        ("change", "match"),
        [
            (lambda b: b.update(format=2), "format 2"),
            (lambda b: b.update(backend="tape"), "unknown backend"),
            (lambda b: b["files"][0].update(path="../../etc/passwd"), "not a path inside"),
            (lambda b: b["files"][0].update(path="/etc/passwd"), "not a path inside"),
            (lambda b: b["files"][0].update(sha256="xyz"), "not a SHA-256"),
            (lambda b: b["files"][0].update(role="other"), "unknown role"),
            (lambda b: b.pop("files"), "files"),
            (lambda b: b["files"].append(b["files"][0]), "named twice"),
        ],
    )
    def test_refuses_what_is_not_a_manifest(self, change, match: str) -> None:
        """A manifest that is not one, or would make a restore write outside its folder,
        is refused as backup-damaged (exit 1)."""
        body = json.loads(manifest().to_json())
        change(body)
        with pytest.raises(InputRefused, match=match) as caught:
            Manifest.from_json(json.dumps(body).encode())
        assert caught.value.code == "backup-damaged" and caught.value.exit_code == 1

    def test_refuses_bytes_that_are_not_json(self) -> None:
        with pytest.raises(InputRefused, match=r"MANIFEST\.json is not a manifest"):
            Manifest.from_json(b"\x00not json")


class TestChecking:
    def test_an_intact_backup_has_no_problem(self) -> None:
        found = {"log.sqlite": A, "keys/broker.key.pem": B, "keys/ca.cert.pem": C}
        assert damaged(manifest(), found) == []

    def test_each_changed_or_missing_file_is_named(self) -> None:
        """A changed file with both digests, a missing one by its path: all at once."""
        found = {"log.sqlite": C, "keys/broker.key.pem": None, "keys/ca.cert.pem": C}
        problems = damaged(manifest(), found)
        assert [str(p) for p in problems] == [
            f"backup-damaged: log.sqlite: changed since the backup (sha256 {C}; "
            f"MANIFEST.json: {A})",
            "backup-damaged: keys/broker.key.pem: missing from the backup",
        ]

    def test_an_embedded_backup_without_a_log_is_damaged(self) -> None:
        m = manifest(files=manifest().files[1:])
        (problem,) = damaged(m, {"keys/broker.key.pem": B, "keys/ca.cert.pem": C})
        assert "names no log file" in problem.message

    def test_a_kafka_backup_has_no_log(self) -> None:
        m = manifest(backend="kafka", files=manifest().files[1:])
        assert damaged(m, {"keys/broker.key.pem": B, "keys/ca.cert.pem": C}) == []

    def test_files_the_manifest_does_not_name(self) -> None:
        present = ["MANIFEST.json", "log.sqlite", "keys/ca.cert.pem", "notes.txt"]
        assert unlisted(manifest(), present) == ["notes.txt"]


class TestPermissions:
    @pytest.mark.parametrize(
        "name",
        [
            "keys/broker.key.pem",
            "keys/agencies/000.00.01.H35.key.pem",
            "keys/sdk-master.key",
            "keys/axis.secret",
            "keys/admin-tokens",
            "keys/admin.token",
            "elsewhere/1-broker.p12",
        ],
    )
    def test_secrets_are_owner_only(self, name: str) -> None:
        """A private key or secret readable by others is backed up 0600 all the same."""
        assert is_secret(name)
        assert backed_up_mode(name, 0o644) == 0o600
        assert backed_up_mode(name, 0o400) == 0o400

    def test_other_files_keep_their_permissions(self) -> None:
        assert not is_secret("keys/ca.cert.pem")
        assert backed_up_mode("keys/ca.cert.pem", 0o100644) == 0o644
        assert backed_up_mode("config/docbroker.toml", 0o640) == 0o640

    def test_the_log_is_owner_only_and_nothing_is_executable(self) -> None:
        assert backed_up_mode("log.sqlite", 0o644) == 0o600
        assert backed_up_mode("keys/ca.cert.pem", 0o755) == 0o644

    @pytest.mark.parametrize("bad", ["", "a//b", "./a", "a/../b", "a\\b"])
    def test_paths_stay_inside(self, bad: str) -> None:
        with pytest.raises(ValueError, match="not a path inside"):
            safe_path(bad)
