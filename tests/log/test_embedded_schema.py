"""The embedded log's schema version: a new file is made at the latest version, an
older one is upgraded in place (its records kept, their sizes counted), a newer
one is refused and left unchanged."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from broker.core.errors import SchemaTooNew
from broker.core.logrecords import NewRecord, TopicSpec
from broker.log.embedded import EmbeddedLog
from broker.log.embedded_schema import LATEST, stored_version
from broker.log.embedded_store import SCHEMA
from broker.log.interface import TopicSize


def first_release_file(path: Path, *, with_version: bool) -> None:
    """A log file as the first release wrote it (schema 1), holding two records;
    `with_version=False`: without the meta row, as if before versions were kept."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    if with_version:
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO topics VALUES ('t', 1, 0, 1000000)")
    conn.execute("INSERT INTO heads VALUES ('t', 0, 2)")
    for offset, value in enumerate((b"x" * 100, b"y" * 50)):
        conn.execute(
            "INSERT INTO records(topic, partition, offset, key, value, headers, ts) "
            "VALUES ('t', 0, ?, ?, ?, ?, 0)",
            (offset, b"k", value, b""),
        )
    conn.commit()
    conn.close()


def version_of(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return stored_version(conn)
    finally:
        conn.close()


class TestSchemaVersion:
    async def test_a_new_file_is_made_at_the_latest_version(self, tmp_path: Path) -> None:
        """A fresh file gets every migration and the latest version; sizes start empty."""
        path = tmp_path / "log.sqlite"
        async with EmbeddedLog(path) as log:
            assert await log.topic_sizes() == {}
        assert version_of(path) == LATEST

    @pytest.mark.parametrize("with_version", [True, False], ids=["schema-1", "no-version"])
    async def test_an_older_file_is_upgraded_in_place(
        self, tmp_path: Path, with_version: bool
    ) -> None:
        """A first-release file (with or without its version row) opens, is upgraded,
        keeps its records, counts their sizes, and goes on counting new ones."""
        path = tmp_path / "log.sqlite"
        first_release_file(path, with_version=with_version)
        assert version_of(path) == 1
        async with EmbeddedLog(path) as log:
            assert await log.topic_sizes() == {"t": TopicSize(2, 2 * 1 + 150)}
            assert (await log.read_at("t", 0, 0)).value == b"x" * 100  # type: ignore[union-attr]
            await log.ensure_topics([TopicSpec("t", 1, 1_000_000)])
            (pos,) = await log.append([NewRecord("t", b"z" * 10, key=b"k")])
            assert pos.offset == 2
            assert await log.topic_sizes() == {"t": TopicSize(3, 3 + 160)}
        assert version_of(path) == LATEST

    async def test_compaction_is_counted(self, tmp_path: Path) -> None:
        """On a compacted topic the record a newer one replaces leaves the counts."""
        path = tmp_path / "log.sqlite"
        async with EmbeddedLog(path) as log:
            await log.ensure_topics([TopicSpec("c", 1, 1_000_000, compacted=True)])
            await log.append([NewRecord("c", b"a" * 10, key=b"k")])
            await log.append([NewRecord("c", b"b" * 20, key=b"k")])
            sizes = await log.topic_sizes()
        assert sizes["c"].records == 1
        assert sizes["c"].bytes == 1 + 20  # key and value; no headers

    async def test_a_newer_file_is_refused_and_left_unchanged(self, tmp_path: Path) -> None:
        """Schema LATEST + 1 (a later docbroker's): SchemaTooNew, exit status 2, the
        message naming both versions and what to do; the file is not touched."""
        path = tmp_path / "log.sqlite"
        async with EmbeddedLog(path):
            pass
        conn = sqlite3.connect(path)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(LATEST + 1),))
        conn.commit()
        conn.close()
        before = path.read_bytes()
        log = EmbeddedLog(path)
        with pytest.raises(SchemaTooNew, match=rf"schema {LATEST + 1}, .* up to {LATEST}: upgrade"):
            await log.start()
        await log.close()
        assert SchemaTooNew.exit_code == 2
        assert version_of(path) == LATEST + 1
        assert path.read_bytes() == before
