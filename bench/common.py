"""What the fetch and memory benchmarks share: a daemon's process tree read from
/proc (CPU time and memory, which sharing the machine's cores disturbs less than
wall-clock rates), quantiles, the summary line.

The daemon, Kafka and the signed envelopes come from `bench.bench_pipeline`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def children(pid: int) -> list[int]:
    """The direct children of `pid` (every thread's)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (the daemon and its pipeline worker processes)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children(p)
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (its own threads), in seconds; 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in tree(pid))


@dataclass(frozen=True)
class Memory:
    """One process's memory from /proc/PID/status, in bytes."""

    pid: int
    name: str
    rss: int  # VmRSS: now
    hwm: int  # VmHWM: the peak RSS since start (or since `reset_peak`)


def memory(pid: int) -> Memory | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def kib(name: str) -> int:
        return int(fields.get(name, "0 kB").split()[0]) * 1024

    return Memory(pid, fields.get("Name", "?").strip(), kib("VmRSS"), kib("VmHWM"))


def role(pid: int, root: int) -> str:
    """What a process of the daemon's tree is: the daemon, a pipeline worker, or
    multiprocessing's resource tracker."""
    if pid == root:
        return "daemon"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    return "resource tracker" if b"resource_tracker" in cmdline else "worker"


def tree_memory(pid: int) -> list[Memory]:
    return [m for p in tree(pid) if (m := memory(p)) is not None]


def reset_peak(pid: int) -> bool:
    """Restart VmHWM at the current RSS (Linux >= 4.0: write 5 to clear_refs; only the
    owner may). False when the kernel refused: peaks then count from the start."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def summary_line(summary: dict[str, object]) -> None:
    """The last line of stdout: one JSON object (what the e2e tests read)."""
    print(json.dumps(summary, sort_keys=True), flush=True)
