"""SQLite files that run out of room: a full disk told apart from other failures, and
each episode of it reported once.

SQLite answers SQLITE_FULL ("database or disk is full") when a write finds no room:
the filesystem is full (a WAL frame or a page cannot be written) or the file may not
grow (PRAGMA max_page_count); opening a file on a full disk fails to make its -shm
file (SQLITE_IOERR_SHMSIZE). Nothing of the failed transaction is kept, so the
write can be tried again once there is space: the error becomes `StorageFull`, a
`BackendUnavailable` that says when to retry. `FullDisk` follows one file's
episodes: a warning when its writes start failing for lack of room (not one per
failed write), a note once they have worked again for a while, and the problem
/readyz reports while they fail.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import structlog

from broker.core.errors import BackendUnavailable, StorageFull

log = structlog.get_logger(__name__)

RETRY_AFTER = 5.0  # seconds a client is asked to wait while the disk is full


def is_full(exc: BaseException) -> bool:
    """Whether SQLite failed for lack of room: SQLITE_FULL, or SQLITE_IOERR_SHMSIZE (its
    shared-memory file beside the WAL could not be extended, which on opening a file
    whose -shm is gone, or as the WAL grows, is what a full disk looks like)."""
    code = getattr(exc, "sqlite_errorcode", None)  # the extended code
    return (
        isinstance(exc, sqlite3.Error)
        and code is not None
        and (code & 0xFF == sqlite3.SQLITE_FULL or code == sqlite3.SQLITE_IOERR_SHMSIZE)
    )


def storage_full(path: Path, exc: BaseException) -> StorageFull:
    return StorageFull(
        f"disk full: no room to write {path} ({exc}); free space on its filesystem",
        retry_after=RETRY_AFTER,
    )


def write_failure(path: Path, exc: BaseException) -> BackendUnavailable:
    """What a failed write of the SQLite file `path` becomes where it leaves the module
    that talks to SQLite."""
    if is_full(exc):
        return storage_full(path, exc)
    return BackendUnavailable(f"SQLite transaction failed: {exc}")


class FullDisk:
    """The episodes of a full disk under one SQLite file; `what` names it in the log.

    An episode begins with a write that fails for lack of room (a warning) and ends
    once writes have worked for `SETTLE` seconds (a note): at the edge of a full
    disk, where a small write still fits and the next does not, it stays one
    episode. `problem` is the last failure while the last write failed (readiness),
    None once a write worked. Used from one thread at a time (the store's writer);
    `problem` may be read from any."""

    SETTLE = 10.0

    def __init__(self, what: str, path: Path) -> None:
        self.what = what
        self.path = path
        self.problem: StorageFull | None = None
        self._began: float | None = None  # the episode's first failure
        self._recovered: float | None = None  # the first write that worked since the last failure
        self._failures = 0

    def failed(self, exc: StorageFull) -> None:
        """A write failed for lack of room: warn if it begins an episode."""
        now = time.monotonic()
        if self._recovered is not None and now - self._recovered >= self.SETTLE:
            self._end()
        if self._began is None:
            self._began = now
            log.warning(
                f"{self.what}: disk full; writes fail until space is freed",
                path=str(self.path),
                error=str(exc),
            )
        self._recovered = None
        self._failures += 1
        self.problem = exc

    def wrote(self) -> None:
        """A write worked: the file has room again, for now."""
        if self._began is None:
            return
        self.problem = None
        now = time.monotonic()
        if self._recovered is None:
            self._recovered = now
        if now - self._recovered >= self.SETTLE:
            self._end()

    def _end(self) -> None:
        assert self._began is not None and self._recovered is not None
        log.info(
            f"{self.what}: writes succeed again",
            path=str(self.path),
            full_for_seconds=round(self._recovered - self._began, 1),
            failed_writes=self._failures,
        )
        self._began = self._recovered = None
        self._failures = 0
