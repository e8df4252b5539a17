"""`docbroker report`: the statistics, per agency and period, from the statistics read
model (the file in the data folder the daemon keeps, caught up from the log first)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from broker.cli.base import cli, emit, json_option, run_with_log, settings_of
from broker.core.errors import ConfigError

PROGRESS_AFTER_S = 2.0  # catching up longer than this says how far it is on stderr


def _date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not a date (yyyy-mm-dd): {value}") from None


class _Progress:
    """Applied-so-far on stderr, once catching up has taken a while."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.shown = 0.0

    def __call__(self, done: int, todo: int) -> None:
        now = time.monotonic()
        if now - self.started >= PROGRESS_AFTER_S and now - self.shown >= 1.0:
            self.shown = now
            click.echo(f"statistics: caught up {done} of {todo} events", err=True)


@cli.command()
@click.option("--from", "first", callback=_date, help="first day (default: 1 January)")
@click.option("--to", "last", callback=_date, help="last day, included (default: today)")
@click.option("--agency", help="one agency, with everything under it")
@click.option("--level", type=click.Choice(["province", "district", "commune"]),
              help="roll up to this level of the directory")  # fmt: skip
@click.option("--period", type=click.Choice(["day", "month", "year"]), default="month",
              show_default=True)  # fmt: skip
@click.option("--csv", "as_csv", is_flag=True, help="print CSV")
@click.option("--xlsx", type=click.Path(dir_okay=False, path_type=Path), help="write Excel")
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path),
              help="write the traffic chart (FILE.svg or FILE.png)")  # fmt: skip
@json_option
@click.pass_context
def report(
    ctx: click.Context,
    first: date | None,
    last: date | None,
    agency: str | None,
    level: str | None,
    period: str,
    as_csv: bool,
    xlsx: Path | None,
    chart: Path | None,
    as_json: bool,
) -> None:
    """Documents and statuses sent and received, the national axis, refusals, statuses
    reached, pending mail, on-time processing and delivery times, per agency and
    period (days in `reports.timezone`)."""
    from broker.views.report import ReportQuery
    from broker.views.report_chart import chart_png, chart_svg
    from broker.views.report_render import csv_text, table_text, xlsx_bytes

    if chart is not None and chart.suffix.lower() not in (".svg", ".png"):
        raise ConfigError(f"--chart: FILE.svg or FILE.png, not {chart.name}")
    settings = settings_of(ctx)
    zone = ZoneInfo(settings.reports.timezone)
    today = datetime.now(UTC).astimezone(zone).date()
    last = last or today
    first = first or date(last.year, 1, 1)
    query = ReportQuery(first, last, period, agency, level)
    made = run_with_log(ctx, lambda log, topics: _report(settings, log, topics, query))
    if xlsx is not None:
        xlsx.write_bytes(xlsx_bytes(made))
    if chart is not None:
        if chart.suffix.lower() == ".svg":
            chart.write_text(chart_svg(made), encoding="utf-8")
        else:
            chart.write_bytes(chart_png(made))
    if as_csv:
        click.echo(csv_text(made), nl=False)
    else:
        emit(made.to_json(), as_json, table_text(made))


async def _report(settings: Any, log: Any, topics: Any, query: Any) -> Any:
    from broker.state.directory import read_directory
    from broker.views.statistics import StatisticsView

    directory = await read_directory(log, topics.directory)
    view = StatisticsView(
        log,
        topics,
        settings.data_path / "statistics.sqlite",
        lambda: directory,
        zone=settings.reports.timezone,
    )
    await view.start(follow=False, progress=_Progress())
    try:
        return await view.report(query)
    finally:
        await view.stop()
