"""The overview's parts that the browser journey does not reach: the national-axis link
as its sender reports it, and certificates close to expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.http_api.console.overview import certificate_rows
from tests.console.conftest import Console
from tests.pki import ca

pytestmark = pytest.mark.usefixtures("no_blocking_loop")

AXIS = {
    "DOCBROKER_NATIONAL_AXIS_ENABLED": "true",
    "DOCBROKER_NATIONAL_AXIS_BASE_URL": "https://axis.test/vdxp",
    "DOCBROKER_NATIONAL_AXIS_SYSTEM_ID": "lai-chau",
}


@pytest.mark.parametrize("console_env", [AXIS])
async def test_the_axis_link_and_its_breaker_as_the_sender_reported_them(
    console: Console,
) -> None:
    """The hooks the upstream sender calls (Metrics.axis_failed, axis_breaker) are what
    the overview shows: the breaker open after failures, closed again after a success."""
    metrics = console.runtime.metrics
    assert (await console.login()).status == 303
    metrics.upstream_queue(3)
    metrics.axis_failed("sendEdoc", "axis-unavailable")
    metrics.axis_breaker(2)
    html = await (await console.client.get("/console/?lang=en")).text()
    assert "https://axis.test/vdxp" in html
    assert "open — sending paused" in html and "sendEdoc: axis-unavailable" in html
    metrics.axis_breaker(0)
    metrics.upstream_done("sent", 0.2)
    html = await (await console.client.get("/console/?lang=vi")).text()
    assert "đóng — hoạt động bình thường" in html


async def test_without_the_link_the_overview_says_it_is_off(console: Console) -> None:
    assert (await console.login()).status == 303
    html = await (await console.client.get("/console/?lang=en")).text()
    assert "The national axis link is not enabled" in html


def test_certificates_expiring_within_30_days_are_marked() -> None:
    cert = ca().certificate
    soon = cert.not_valid_after_utc - timedelta(days=10)
    later = cert.not_valid_after_utc - timedelta(days=90)
    after = cert.not_valid_after_utc + timedelta(days=1)
    (row,) = certificate_rows([("ca", cert)], soon)
    assert row.soon and not row.expired and round(row.days_left) == 10
    (row,) = certificate_rows([("ca", cert)], later)
    assert not row.soon
    (row,) = certificate_rows([("ca", cert)], after)
    assert row.expired
    assert certificate_rows([("ca", cert)], datetime.now(UTC))[0].subject
