"""How much the log and the read models hold: for the metrics and `docbroker status`.

Per topic, the records and their bytes (key + value + headers) as the backend
tells them: the embedded log keeps counters in its file (schema 2), so reading
them costs nothing; Kafka's sizes are its brokers' log directories, which
aiokafka cannot ask for (no DescribeLogDirs): there docbroker gives the records
written (the end offsets) and no bytes (README "Sizing"). The read models are
their SQLite files (with -wal and -shm).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.core.topics import Topics
from broker.log.interface import DurableLog, TopicSize

READ_MODELS = {
    "mailbox": "mailbox.sqlite",
    "documents": "documents.sqlite",
    "statistics": "statistics.sqlite",
}
INTERVAL = 60.0  # seconds between two measurements of the running daemon


def file_bytes(path: Path) -> int | None:
    """A SQLite file's bytes with its -wal and -shm; None when it does not exist."""
    if not path.exists():
        return None
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += path.with_name(path.name + suffix).stat().st_size
        except FileNotFoundError:
            continue
    return total


@dataclass(frozen=True)
class Sizes:
    """A measurement: `topics` bytes are None where the backend cannot tell."""

    backend: str
    topics: dict[str, TopicSize | None]
    records_written: dict[str, int]  # end offsets summed over partitions
    log_file_bytes: int | None  # the embedded log's file; None on Kafka
    read_models: dict[str, int | None]
    data_free_bytes: int | None = None  # the data directory's filesystem: free space
    data_capacity_bytes: int | None = None  # and its size

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "topics": {
                name: {
                    "records": size.records if size else None,
                    "bytes": size.bytes if size else None,
                    "records_written": self.records_written.get(name, 0),
                }
                for name, size in self.topics.items()
            },
            "log_file_bytes": self.log_file_bytes,
            "read_models": self.read_models,
            "data_free_bytes": self.data_free_bytes,
            "data_capacity_bytes": self.data_capacity_bytes,
        }


async def measure(log: DurableLog, topics: Topics, data_path: Path, log_file: Path | None) -> Sizes:
    """Sizes now: counters from the log, end offsets, file sizes (off the loop)."""
    held = await log.topic_sizes()
    ends = await log.end_offsets(topics.all())
    written: dict[str, int] = {}
    for tp, offset in ends.items():
        written[tp.topic] = written.get(tp.topic, 0) + offset
    names = topics.all()
    sized: dict[str, TopicSize | None] = (
        {name: held.get(name, TopicSize(0, 0)) for name in names}
        if held is not None
        else dict.fromkeys(names)
    )

    def files() -> tuple[int | None, dict[str, int | None], tuple[int, int] | None]:
        views = {view: file_bytes(data_path / name) for view, name in READ_MODELS.items()}
        return (file_bytes(log_file) if log_file else None), views, filesystem(data_path)

    log_bytes, views, space = await asyncio.to_thread(files)
    free, capacity = space if space is not None else (None, None)
    return Sizes(log.name, sized, written, log_bytes, views, free, capacity)


def filesystem(path: Path) -> tuple[int, int] | None:
    """(free, size) of `path`'s filesystem in bytes, free as an unprivileged process
    may still write (docbroker is not root); None when it cannot be asked."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
