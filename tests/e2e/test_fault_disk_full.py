"""Fault: the disk under the embedded backend fills up while documents are submitted.

The daemon's data folder (its log, its read models, its keys) is a small tmpfs. A
third of the way through the submissions a filler file takes every byte left on it,
while the pipeline has a backlog (its worker processes are held until the door meets
the full disk). While the log cannot grow, the door answers 503 with a Retry-After
(nothing is taken in that is not durable), /readyz answers 503 naming the full disk,
and the pipeline's commits fail whole and are tried again, its batches read again;
the daemon warns once per store that the disk is full, not once a request. The filler
removed, the daemon recovers by itself (no restart): every document is taken in, and
the complete output is exactly the expected one: one delivery per recipient, no
refusal, no false status, the audit chain intact.
"""

from __future__ import annotations

import errno
import json
import random
import shutil
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import DaemonFactory
from tests.e2e.faults import Submitters, check, pipeline_workers, readyz, signal_each
from tests.edxml_samples import full_document
from tests.ledger import Expected
from tests.pki import install_keys

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SENDER = "000.00.00.H35"
CODES = ("H35.S01", "H35.S02")  # the recipients of full_document
TOTAL = 300
ATTACHMENT = 12_000  # bytes of PDF per package (16 kB once base64-encoded)
DISK = "64m"  # the tmpfs: room for every document, once the filler is gone
BACKLOG = 30  # documents taken in, not yet routed, when the disk fills
FULL_FOR = 6.0  # seconds the disk stays full once the door answers 503
LOG_WARNING = "embedded log: disk full; writes fail until space is freed"
COMMIT_FAILURES = 'docbroker_pipeline_commit_failures_total{reason="disk-full"}'


def doc_id(n: int) -> str:
    return f"{SENDER},2026/11/24,{n}/FULL"


def package(n: int) -> bytes:
    data = full_document(attachments={"cid:1": random.Random(n).randbytes(ATTACHMENT)})
    original = b"<edXML:DocumentId>000.00.00.H35,2026/11/20,12/UBND-VP</edXML:DocumentId>"
    assert original in data
    return data.replace(original, f"<edXML:DocumentId>{doc_id(n)}</edXML:DocumentId>".encode())


@pytest.fixture
def backend() -> str:
    """A full disk under SQLite: the embedded backend only."""
    return "embedded"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A size-limited filesystem (tmpfs, mounted here: needs root), unmounted at
    teardown, after the daemons (which depend on it through `daemon_env`) are gone."""
    path = tmp_path / "disk"
    path.mkdir()
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("no mount command: the full-disk fault needs a tmpfs")
    proc = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs ({proc.stderr.strip() or proc.returncode}; needs root): "
            "the full store is tested with SQLite's max_page_count in "
            "tests/log/test_embedded_full.py, tests/api/test_disk_full.py and "
            "tests/pipeline/test_commit_disk_full.py"
        )
    try:
        yield path
    finally:
        subprocess.run([shutil.which("umount") or "umount", "-l", str(path)], check=False)


@pytest.fixture
def daemon_env(daemon_env: dict[str, str], disk: Path) -> dict[str, str]:
    """The deployment's data folder (log, read models, keys) on the small disk."""
    install_keys(disk)
    return {**daemon_env, "DOCBROKER_DATA_DIR": str(disk)}


def fill(disk: Path) -> Path:
    """A file taking every byte left on `disk` (written until ENOSPC)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1024 * 1024, 4096, 512):
            block = b"\0" * chunk
            while True:
                try:
                    f.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return filler


def until_ready(url: str, status: int, timeout: float, log_check: str = "") -> dict[str, str]:
    """Poll /readyz until it answers `status` (with `log_check` in its log check); its
    checks then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got, body = readyz(url)
        checks = json.loads(body)["checks"]
        if got == status and log_check in checks["log"]:
            return checks
        time.sleep(0.1)
    raise AssertionError(f"/readyz did not answer {status} within {timeout} s: {body}")


def disk_full_warnings(events: list[dict]) -> Counter[str]:
    """How many times each store warned that its disk is full."""
    return Counter(
        e["event"] for e in events if e.get("level") == "warning" and "disk full" in e["event"]
    )


def counter(url: str, series: str) -> float:
    """One series of a counter of a daemon (0 until it is counted)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.timeout(300)
def test_a_full_disk_answers_503_loses_nothing_and_recovers_without_restart(
    daemons: DaemonFactory, daemon_env: dict[str, str], disk: Path
) -> None:
    daemon = daemons("disk-full")
    assert daemon.proc is not None
    pid = daemon.proc.pid
    token = daemon.client_for(SENDER).token or ""
    submitters = Submitters(
        lambda n: (doc_id(n), package(n)),
        TOTAL,
        token=lambda _: token,
        urls=lambda _: daemon.url,
        interval=0.05,
    ).start()
    while len(submitters.accepted) < TOTAL // 3:
        time.sleep(0.05)
    # A backlog for the pipeline to meet the full disk with: its worker processes are
    # held while some more documents are taken in, and let go only once the door has
    # met the full disk. Let go at once, the pipeline could write its whole backlog
    # into the room SQLite's write-ahead log still had (its file is reused, not
    # shrunk), the door's appends taking the last of it: the pipeline would then
    # never meet the full disk (CI saw that once).
    workers = pipeline_workers(pid)
    assert workers, "the daemon runs its pipeline in worker processes"
    signal_each(workers, signal.SIGSTOP)
    try:
        held = len(submitters.accepted)
        while len(submitters.accepted) < held + BACKLOG:
            time.sleep(0.05)
        filler = fill(disk)
        accepted_at_fill = len(submitters.accepted)
        deadline = time.monotonic() + 60
        while submitters.failures[503] == 0:
            assert time.monotonic() < deadline, "the door never answered 503 on a full disk"
            time.sleep(0.05)
    finally:
        signal_each(workers, signal.SIGCONT)
    checks = until_ready(daemon.url, 503, timeout=15, log_check="disk full")
    time.sleep(FULL_FOR)
    during = until_ready(daemon.url, 503, timeout=1, log_check="disk full")
    refused_while_full = submitters.failures[503]
    filler.unlink()
    until_ready(daemon.url, 200, timeout=60)
    submitters.join(180)

    assert len(submitters.accepted) == TOTAL
    assert daemon.proc.poll() is None and daemon.proc.pid == pid, "no restart"
    expected = Expected("H35", {doc_id(n): CODES for n in range(TOTAL)}, resent=submitters.resent)
    warnings = disk_full_warnings(daemon.log_events())
    per_request = [e for e in daemon.log_events() if e["event"] == "request failed"]
    _, problems = check(
        "disk full (embedded)",
        daemon_env,
        expected,
        TOTAL,
        accepted_before_full=accepted_at_fill,
        answered_503=submitters.failures[503],
        without_retry_after=submitters.without_retry_after,
        other_failures={k: v for k, v in submitters.failures.items() if k != 503},
        disk_full_warnings=sum(warnings.values()),
        request_warnings=len(per_request),
        commit_failures_disk_full=int(counter(daemon.url, COMMIT_FAILURES)),
    )
    assert problems == []
    assert counter(daemon.url, COMMIT_FAILURES) >= 1, "the pipeline met the full disk"
    assert refused_while_full > 0 and submitters.without_retry_after == 0
    assert set(submitters.failures) == {503}, submitters.failures
    assert checks["log"].startswith("disk full") and during["log"].startswith("disk full")
    # Once per episode and store (the log; the read models, if they met the full disk).
    assert warnings[LOG_WARNING] == 1, warnings
    assert all(n == 1 for n in warnings.values()), warnings
    assert per_request == []
