"""Worker processes for the pipeline's CPU work (XML, signatures).

One Python process runs its bytecode on one core at a time; the pipeline's work
(parse, validate, verify, stamp and sign) is mostly Python and would leave a
second core idle. A small process pool runs `process_batch` instead, each worker
having built its processor (schema, keys) once at start. The pool receives a
batch with the directory snapshot and the dedup facts it needs, and returns the
outcomes: it does no I/O.

The daemon stops its workers (shutdown, after the batch in hand), and they follow
it when it dies. A signal for the whole process group or control group (Ctrl-C
in a terminal, `kill -TERM -PGID`, systemd's KillMode=control-group) is left to
the daemon: a worker takes SIGINT and SIGTERM in a thread of its own and ends
only on the daemon's own SIGTERM (the pool ending broken workers). So neither
prints a KeyboardInterrupt traceback from each worker nor breaks the pool under
the batch in hand. SIGINT is also held while the workers start (as
multiprocessing's resource tracker does).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from broker.config import Settings
from broker.core.logrecords import Record
from broker.core.records import FirstSeen
from broker.directory.book import Directory
from broker.pipeline.batch import BatchContext, Outcome
from broker.pipeline.processing import InboundProcessor

_processor: InboundProcessor | None = None
Seen = dict[tuple[str, str], FirstSeen]  # what the dedup index knows of a batch's documents


@dataclass(frozen=True)
class Parcel:
    """A directory snapshot as shipped to the workers: pickled once per version in the
    daemon (pickling its agencies for every batch cost as much as the batch's own
    records), and opened once per version in each worker."""

    key: int
    blob: bytes


_versions = itertools.count(1)
_opened: tuple[int, Directory] | None = None  # in a worker: the last parcel opened


def open_parcel(parcel: Parcel) -> Directory:
    """The parcel's directory, unpickled only when this worker has not opened it yet."""
    global _opened  # one per worker process
    if _opened is None or _opened[0] != parcel.key:
        # The daemon's own pickle, through the pool's pipe (like the batch itself).
        _opened = (parcel.key, pickle.loads(parcel.blob))  # noqa: S301
    return _opened[1]


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _init(settings: Settings, parent: int) -> None:
    global _processor  # one per worker process, built once
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # the threads started inherit it
    from broker.pipeline.build import build_processor

    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()
    threading.Thread(target=_signals, args=(parent,), name="signal-watch", daemon=True).start()
    _processor = build_processor(settings, reporting=False)


def _signals(parent: int) -> None:
    """SIGINT and SIGTERM, taken here: the daemon's SIGTERM ends the worker at once;
    anyone else's is the daemon's to act on, which stops its workers itself."""
    while True:
        info = signal.sigwaitinfo(STOP_SIGNALS)
        if info.si_signo == signal.SIGTERM and info.si_pid == parent:
            os._exit(128 + signal.SIGTERM)


def _exit_with(parent: int, interval: float = 1.0) -> None:
    """Exit when the daemon is gone: after a kill -9 nobody shuts the pool down, and a
    worker would otherwise live on (holding its memory) with init as its parent."""
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(0)


def _process(records: Sequence[Record], parcel: Parcel, seen: Seen, now_ms: int) -> list[Outcome]:
    assert _processor is not None, "worker not initialised"
    directory = open_parcel(parcel)
    ctx = BatchContext(directory, lambda sender, doc: seen.get((sender, doc)), now_ms)
    return _processor.process_batch(records, ctx)


def _ready() -> bool:
    return _processor is not None


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT held in this thread and the processes it starts (until their _init takes
    it); a SIGINT for the daemon meanwhile reaches it once released, or through
    another thread. (Not SIGTERM: a pool without _init must still end its workers.)"""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


Work = Callable[[Sequence[Record], Parcel, Seen, int], list[Outcome]]


class ProcessingPool:
    """`work` (process_batch) in worker processes (spawned: the daemon has threads)."""

    def __init__(
        self,
        processes: int,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
        work: Work | None = None,
    ) -> None:
        self.processes = processes
        self.work = work or process_in_pool
        self._parcel: tuple[Directory, Parcel] | None = None
        self._pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=initializer,
            initargs=initargs,
        )

    @classmethod
    def for_pipeline(cls, settings: Settings, processes: int) -> ProcessingPool:
        """Workers that build the pipeline's processor once, and exit with the daemon."""
        return cls(processes, _init, (settings, os.getpid()))

    def warm_up(self) -> None:
        """Start every worker now (keys load at start, not on the first envelope)."""
        with _sigint_blocked():  # the submits start the processes
            futures = [self._pool.submit(_ready) for _ in range(self.processes * 2)]
        for f in futures:
            f.result(timeout=120)

    async def run(
        self,
        records: Sequence[Record],
        directory: Directory,
        seen: Seen,
        now_ms: int,
    ) -> list[Outcome]:
        """One batch in a worker process; BrokenProcessPool when a worker died."""
        loop = asyncio.get_running_loop()
        parcel = self._parcel_of(directory)
        return await loop.run_in_executor(self._pool, self.work, records, parcel, seen, now_ms)

    def _parcel_of(self, directory: Directory) -> Parcel:
        """The directory's parcel, made when the snapshot changed (a new object)."""
        if self._parcel is None or self._parcel[0] is not directory:
            blob = pickle.dumps(directory, protocol=pickle.HIGHEST_PROTOCOL)
            self._parcel = (directory, Parcel(next(_versions), blob))
        return self._parcel[1]

    async def ping(self) -> None:
        """A round trip through a worker; BrokenProcessPool when a worker died."""
        await asyncio.wrap_future(self._pool.submit(_ready))

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)


def process_in_pool(
    records: Sequence[Record],
    parcel: Parcel,
    seen: Seen,
    now_ms: int,
) -> list[Outcome]:
    """The function the pool runs (importable by name in the workers)."""
    return _process(records, parcel, seen, now_ms)
