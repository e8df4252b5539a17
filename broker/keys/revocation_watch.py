"""The daemon's look at its CRL files: every trust.crl_check_interval seconds it reads
a changed file again (broker.keys.crlfiles; verifications do as well, in whichever
process they run), says once what is wrong, and reports metrics and /readyz's
`revocation` check (still "ok": an outdated CRL refuses what the policy refuses, it
does not stop the instance, and every instance reads the same file)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from broker.clock import utc_now
from broker.keys.crlfiles import CrlFiles
from broker.metrics import Metrics
from broker.trust.store import TrustStore


def crl_files_of(store: TrustStore) -> CrlFiles | None:
    source = store.crl_source
    return source if isinstance(source, CrlFiles) else None


def report(crls: CrlFiles, metrics: Metrics, now: datetime) -> None:
    crls.say_stale(now)
    for f in crls.files:
        next_update = f.crl.next_update_utc
        metrics.crl_file(
            str(f.path),
            next_update_seconds=(next_update - now).total_seconds() if next_update else None,
            read_at=f.read_at.timestamp(),
            failing=bool(f.problem),
        )


async def watch(crls: CrlFiles, metrics: Metrics) -> None:
    """Forever: look at the files, report, wait."""
    while True:
        await asyncio.to_thread(crls.refresh)
        report(crls, metrics, utc_now())
        await asyncio.sleep(crls.interval)


def readiness(store: TrustStore, now: datetime) -> str:
    """/readyz's `revocation` check: "ok", or "ok; " and what an operator should know."""
    crls = crl_files_of(store)
    problems = crls.problems(now) if crls is not None else []
    return "; ".join(["ok", *problems])
