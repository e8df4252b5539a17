"""A consistent copy of the embedded log while daemons write to it (`docbroker backup`).

SQLite's online backup API copies the file page by page. The copy holds one read
transaction on the log from its first page to its last, so every page comes from
the same snapshot: the last transaction committed before it began, whole, and
nothing of any later one (the file is in WAL mode: writers go on meanwhile, into
the WAL). Without that transaction each step would see the writers' commits and
start the copy again, for ever under load. The pipeline's committed offsets are in
the same file, written in the same transactions as its outputs, so the copy holds
them consistently with what they produced.

The copy is then made self-contained (journal mode DELETE: one file, no -wal) and
forgets the consumer-group members of the processes that ran (none of them runs
on a restored file; their partitions are free at once, their epochs kept), and is
checked (`PRAGMA quick_check`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from broker.core.errors import BackendUnavailable

STEP_PAGES = 1024  # pages copied per step (4 MiB at SQLite's default page size)

Progress = Callable[[int, int], None]  # (bytes copied, bytes in all)


@dataclass(frozen=True)
class Snapshot:
    """What the copy holds: its size and the log's positions in it."""

    pages: int
    page_size: int
    end_offsets: dict[str, dict[int, int]]  # topic -> partition -> next offset
    group_offsets: dict[str, dict[str, dict[int, int]]]  # group -> topic -> partition -> next


def snapshot(
    source: Path, target: Path, *, progress: Progress | None = None, step: int = STEP_PAGES
) -> Snapshot:
    """Copy the embedded log `source` into the new file `target`, consistently.

    Raises `BackendUnavailable` when `source` is not there or cannot be read."""
    if not source.is_file():
        raise BackendUnavailable(f"no embedded log at {source}")
    if target.exists():
        raise FileExistsError(target)
    try:
        src = sqlite3.connect(f"file:{source}?mode=rw", uri=True, isolation_level=None, timeout=30)
    except sqlite3.Error as exc:
        raise BackendUnavailable(f"cannot open {source}: {exc}") from exc
    try:
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            _copy(src, dst, progress, step)
            return _settle(dst)
        finally:
            dst.close()
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)
        raise BackendUnavailable(f"cannot copy {source}: {exc}") from exc
    finally:
        src.close()


def _copy(
    src: sqlite3.Connection, dst: sqlite3.Connection, progress: Progress | None, step: int
) -> None:
    src.execute("PRAGMA busy_timeout=30000")
    src.execute("BEGIN")
    src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts here
    page = src.execute("PRAGMA page_size").fetchone()[0]
    try:

        def report(_status: int, remaining: int, total: int) -> None:
            if progress is not None:
                progress((total - remaining) * page, total * page)

        src.backup(dst, pages=step, progress=report)
    finally:
        src.execute("COMMIT")


def _settle(dst: sqlite3.Connection) -> Snapshot:
    ok = dst.execute("PRAGMA quick_check").fetchone()[0]
    if ok != "ok":
        raise sqlite3.DatabaseError(f"the copy does not check: {ok}")
    dst.execute("BEGIN IMMEDIATE")
    dst.execute("DELETE FROM group_members")
    dst.execute("UPDATE partition_owners SET member_id = NULL")
    dst.execute("COMMIT")
    dst.execute("PRAGMA journal_mode=DELETE")
    ends: dict[str, dict[int, int]] = {}
    for topic, partitions in dst.execute("SELECT name, partitions FROM topics"):
        ends[topic] = dict.fromkeys(range(partitions), 0)
    for topic, partition, nxt in dst.execute("SELECT topic, partition, next_offset FROM heads"):
        ends.setdefault(topic, {})[partition] = nxt
    groups: dict[str, dict[str, dict[int, int]]] = {}
    for grp, topic, partition, nxt in dst.execute(
        "SELECT grp, topic, partition, next_offset FROM group_offsets"
    ):
        groups.setdefault(grp, {}).setdefault(topic, {})[partition] = nxt
    pages = dst.execute("PRAGMA page_count").fetchone()[0]
    page_size = dst.execute("PRAGMA page_size").fetchone()[0]
    return Snapshot(pages, page_size, ends, groups)
