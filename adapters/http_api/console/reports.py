"""Reports: the statistics view's report for a range of days, its chart (SVG drawn by
the server) and its downloads (CSV, XLSX), as `docbroker report` gives them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from adapters.http_api.console.render import render
from adapters.http_api.keys import RUNTIME
from broker.core.errors import BadRequest
from broker.runtime import Runtime
from broker.views.report import LEVELS, PERIODS, Report, ReportQuery
from broker.views.report_chart import chart_svg
from broker.views.report_render import csv_text, xlsx_bytes

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TOTALS = (
    "sent_documents",
    "received_documents",
    "sent_statuses",
    "received_statuses",
    "axis_in",
    "axis_out",
    "refused",
    "pending",
)


def today(runtime: Runtime) -> date:
    """Today in the zone the statistics count days in (reports.timezone)."""
    return datetime.now(UTC).astimezone(ZoneInfo(runtime.settings.reports.timezone)).date()


def report_query(form: Mapping[str, str], now: date) -> ReportQuery:
    """The report the form asks for: this year to date by month unless it says
    otherwise; BadRequest for a value it cannot take."""
    try:
        last = date.fromisoformat(form["to"]) if form.get("to") else now
        first = date.fromisoformat(form["from"]) if form.get("from") else date(last.year, 1, 1)
    except ValueError:
        raise BadRequest("from and to are days: YYYY-MM-DD") from None
    if first > last:
        raise BadRequest("from must not be after to")
    period = form.get("period") or "month"
    level = form.get("level") or None
    if period not in PERIODS or (level is not None and level not in LEVELS):
        raise BadRequest(f"period is one of {', '.join(PERIODS)}; level of {', '.join(LEVELS)}")
    return ReportQuery(first, last, period, (form.get("agency") or "").strip() or None, level)


async def _report(request: web.Request) -> Report:
    runtime = request.config_dict[RUNTIME]
    return await runtime.statistics.report(report_query(request.query, today(runtime)))


async def traffic(runtime: Runtime) -> dict[str, dict[str, int]]:
    """Today's and this month's totals (the overview)."""
    now = today(runtime)
    day, month = await asyncio.gather(
        runtime.statistics.report(ReportQuery(now, now, "day")),
        runtime.statistics.report(ReportQuery(now.replace(day=1), now, "month")),
    )
    return {"today": day.totals, "month": month.totals}


async def reports_page(request: web.Request) -> web.StreamResponse:
    runtime = request.config_dict[RUNTIME]
    form = {k: request.query.get(k, "") for k in ("from", "to", "period", "agency", "level")}
    context: dict[str, Any] = {
        "section": "reports",
        "form": form,
        "periods": PERIODS,
        "levels": LEVELS,
        "report": None,
        "error": "",
        "totals": TOTALS,
        "query_string": request.query_string,
    }
    try:
        context["report"] = await runtime.statistics.report(
            report_query(request.query, today(runtime))
        )
    except BadRequest as exc:
        context["error"] = str(exc)
        return render(request, "reports.html", context, status=400)
    return render(request, "reports.html", context)


def _download(body: bytes, content_type: str, report: Report, suffix: str) -> web.Response:
    q = report.query
    name = f"docbroker-report-{q.first_day.isoformat()}-{q.last_day.isoformat()}.{suffix}"
    return web.Response(
        body=body,
        content_type=content_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def chart(request: web.Request) -> web.StreamResponse:
    report = await _report(request)
    return web.Response(text=chart_svg(report), content_type="image/svg+xml", charset="utf-8")


async def csv_download(request: web.Request) -> web.StreamResponse:
    report = await _report(request)
    return _download(csv_text(report).encode("utf-8-sig"), "text/csv", report, "csv")


async def xlsx_download(request: web.Request) -> web.StreamResponse:
    report = await _report(request)
    body = await asyncio.to_thread(xlsx_bytes, report)
    return _download(body, XLSX, report, "xlsx")
