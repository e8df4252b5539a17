"""`docbroker documents find`: search the documents by number/notation, agency, date,
status and kind, as the HTTP API's GET /v1/documents does (for an administrator).

The command opens the documents view on the configured data path (the daemon's own
file when it runs on this machine: both apply the log to it idempotently), catches
it up from the log, then asks it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from broker.cli.base import cli, emit, json_option, run_with_log, settings_of

if TYPE_CHECKING:
    from broker.core.topics import Topics
    from broker.log.interface import DurableLog
    from broker.views.document_query import DocumentPage, DocumentQuery

PROGRESS_EVERY = 2.0  # seconds between progress lines while the view catches up


@cli.group()
def documents() -> None:
    """The documents view: search what was sent and received."""


def search_documents(ctx: click.Context, query: DocumentQuery) -> DocumentPage:
    """Open the documents view, catch it up from the log (progress on stderr when that
    takes a while), and run `query`."""
    from broker.state.directory import read_directory
    from broker.views.documents import DocumentsView

    path = settings_of(ctx).data_path / "documents.sqlite"  # the daemon's (broker.runtime)

    async def work(log: DurableLog, topics: Topics) -> DocumentPage:
        directory = await read_directory(log, topics.directory)
        view = DocumentsView(
            log, topics, path, resolve=lambda code: (a := directory.find(code)) and a.code
        )
        await view.start(progress=_progress())
        try:
            return await view.find(query)
        finally:
            await view.stop()

    return run_with_log(ctx, work)


def _progress() -> Any:
    started = last = time.monotonic()

    def say(applied: int, behind: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY or (applied >= behind and now - started >= PROGRESS_EVERY):
            last = now
            click.echo(f"documents view: {applied} of {behind} events applied", err=True)

    return say


def page_lines(page: DocumentPage) -> list[str]:
    """A page as lines: time, sender, kind, number/notation, subject, DocumentId and
    each recipient's state."""
    lines = []
    for d in page.items:
        states = ", ".join(
            f"{r['agency'] or r['requested']} {r['state']}"
            + (f" {r['latest_status']['code']}" if r["latest_status"] else "")
            for r in d["recipients"]
        )
        code = d["code"] or "-"
        lines.append(f"{d['accepted_at']}  {d['sender']}  {d['kind']}  {code}  {d['subject']}")
        lines.append(f"    {d['document_id']}  ->  {states or 'no recipient'}")
    if not page.items:
        lines.append("no document found")
    if page.next_cursor:
        lines.append(f"more: --cursor {page.next_cursor}")
    return lines


@documents.command("find")
@click.option("--code", help="number/notation, e.g. 345/SCT-VP; a trailing * for a prefix")
@click.option("--document-id", help="the edXML DocumentId")
@click.option("--sender", help="the sending agency (either code)")
@click.option("--recipient", help="a recipient agency (either code)")
@click.option("--from", "since", help="accepted from: YYYY-MM-DD (UTC) or an ISO-8601 time")
@click.option("--to", "until", help="accepted up to: YYYY-MM-DD (that day included) or a time")
@click.option(
    "--status", help="a StatusCode reached (01..06, 13, 15, 16) or routed|delivered|ack…|refused"
)
@click.option("--kind", type=click.Choice(["document", "status"]))
@click.option("--limit", type=int, default=50, show_default=True, help="items per page (≤ 500)")
@click.option("--cursor", help="the page after the one that printed this cursor")
@json_option
@click.pass_context
def find(
    ctx: click.Context,
    since: str | None,
    until: str | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Find documents, newest first (every filter optional, all must hold)."""
    from broker.views.document_query import DocumentQuery, parse_when

    query = DocumentQuery(
        since_ms=parse_when(since) if since else None,
        until_ms=parse_when(until, end=True) if until else None,
        **fields,
    )
    page = search_documents(ctx, query)
    emit(page.to_json(), as_json, "\n".join(page_lines(page)))
