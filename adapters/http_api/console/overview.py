"""The overview page: is the broker well, and what needs an administrator today."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from cryptography import x509

from adapters.http_api.console.keys import DEAD_LETTERS
from adapters.http_api.console.render import render
from adapters.http_api.console.reports import TOTALS, traffic
from adapters.http_api.keys import RUNTIME
from broker.clock import now_ms, utc_now
from broker.runtime import Runtime
from broker.trust.certs import fingerprint, subject_text
from broker.views.dead_letters import select

SOON_DAYS = 30  # certificates expiring within this many days are highlighted
BREAKER_STATES = {0: "closed", 1: "half-open", 2: "open"}


@dataclass(frozen=True, slots=True)
class CertificateRow:
    role: str
    subject: str
    fingerprint: str
    not_after: datetime
    days_left: float

    @property
    def soon(self) -> bool:
        return self.days_left < SOON_DAYS

    @property
    def expired(self) -> bool:
        return self.days_left < 0


def certificate_rows(
    certificates: Iterable[tuple[str, x509.Certificate]], now: datetime
) -> list[CertificateRow]:
    """Every certificate docbroker depends on, the first to expire first."""
    rows = [
        CertificateRow(
            role,
            subject_text(cert),
            fingerprint(cert),
            cert.not_valid_after_utc,
            (cert.not_valid_after_utc - now).total_seconds() / 86400,
        )
        for role, cert in certificates
    ]
    return sorted(rows, key=lambda r: r.not_after)


def axis_link(runtime: Runtime) -> dict[str, Any]:
    """The national-axis link as its sender last reported it (Metrics.axis)."""
    axis = runtime.settings.national_axis
    state = runtime.metrics.axis
    return {
        "enabled": axis.enabled,
        "url": axis.base_url if axis.enabled else "",
        "breaker": BREAKER_STATES.get(state.breaker, str(state.breaker)),
        "last_ok_at": state.last_ok_at,
        "last_failure": state.last_failure,
        "last_failure_at": state.last_failure_at,
        "upstream_queue": state.upstream_queue,
    }


async def overview(request: web.Request) -> web.StreamResponse:
    runtime = request.config_dict[RUNTIME]
    checks, backlog, letters, today_and_month = await asyncio.gather(
        runtime.readiness(),
        runtime.view.pending_by_agency(),
        request.app[DEAD_LETTERS].letters(runtime.log, runtime.topics),
        traffic(runtime),
    )
    directory = runtime.directory.current
    now = now_ms()
    context = {
        "section": "overview",
        "checks": checks,
        "ready": all(v.startswith("ok") for v in checks.values()),
        "backlog": [
            {
                "agency": b.agency,
                "name": a.name if (a := directory.find(b.agency)) else "",
                "pending": b.pending,
                "oldest_ms": b.oldest_ms,
                "hours": b.age_seconds(now) / 3600,
            }
            for b in backlog
        ],
        "dead_letter_count": len(letters),
        "dead_letters": select(letters, limit=5),
        "axis": axis_link(runtime),
        "certificates": certificate_rows(runtime.trust.certificates(), utc_now()),
        "soon_days": SOON_DAYS,
        "traffic": today_and_month,
        "traffic_keys": TOTALS,
    }
    return render(request, "overview.html", context)
