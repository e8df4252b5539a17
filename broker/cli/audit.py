"""`docbroker trace` and `audit verify`: the audit trail."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from broker.cli.base import (
    _current_directory,
    cli,
    emit,
    json_option,
    run_with_log,
)
from broker.core.errors import EXIT_OK, EXIT_REFUSED

if TYPE_CHECKING:
    pass


@cli.command()
@click.argument("document_id")
@click.option("--sender", help="the sending agency (either code), when others used the id too")
@json_option
@click.pass_context
def trace(ctx: click.Context, document_id: str, sender: str | None, as_json: bool) -> None:
    """The life of a document: every event, across recipients and statuses (of one
    sender's document with --sender: a document is (sender, DocumentId)). DOCUMENT_ID
    may also be its number/notation ("345/SCT-VP"), looked up in the documents view."""
    from broker.core.errors import Archived, NotFound
    from broker.views.audit import document_events, trace_lines
    from broker.views.document_fold import events_of

    archived: Archived | None = None
    heading: list[str] = []  # which document a number/notation named
    try:
        events = run_with_log(ctx, lambda log, topics: document_events(log, topics, document_id))
    except Archived as exc:  # unless it was a number/notation
        archived, events = exc, []
    if not events:
        found = _by_number(ctx, document_id, sender, as_json)
        if found is None:
            raise archived or NotFound(f"no event for document {document_id}")
        document_id, sender = found["document_id"], found["sender"]
        heading = [f"document {document_id} from {sender}: {found['subject']}"]
        events = run_with_log(ctx, lambda log, topics: document_events(log, topics, document_id))
    if sender:
        agency = _current_directory(ctx).find(sender)
        events = events_of(events, agency.codes() if agency else (sender,))
    if not events:
        raise NotFound(f"no event for document {document_id}")
    emit(events, as_json, "\n".join(heading + trace_lines(events)))


def _by_number(
    ctx: click.Context, code: str, sender: str | None, as_json: bool
) -> dict[str, Any] | None:
    """The one document numbered `code` (of `sender`, if given); None when none is.
    Several: they are listed and the command exits 1, asking which."""
    from broker.cli.documents import search_documents
    from broker.core.errors import BadRequest
    from broker.views.document_query import DocumentQuery

    try:
        query = DocumentQuery(code=code, sender=sender, kind="document", limit=20)
    except BadRequest:
        return None  # not a number/notation either
    found = search_documents(ctx, query).items
    if len(found) <= 1:
        return found[0] if found else None
    emit({"ok": False, "code": "ambiguous", "documents": list(found)}, as_json)
    click.echo(f"docbroker: {len(found)} documents are numbered {code}:", err=True)
    for d in found:
        click.echo(
            f"  {d['sender']}  {d['document_id']}  {d['accepted_at']}  {d['subject']}", err=True
        )
    click.echo("name one with --sender or by its DocumentId", err=True)
    ctx.exit(EXIT_REFUSED)
    return None


@cli.group()
def audit() -> None:
    """The audit trail."""


@audit.command("verify")
@json_option
@click.pass_context
def audit_verify(ctx: click.Context, as_json: bool) -> None:
    """Check every hash chain of the audit trail; exit 1 at the first break of any."""
    from broker.views.audit import verify_audit

    report = run_with_log(ctx, lambda log, topics: verify_audit(log, topics))
    counts, breaks = report.counts, report.breaks
    data = {
        "chains": counts,
        "events": sum(counts.values()),
        "archived": sum(report.archived.values()),
        "archived_by_chain": report.archived,
        "breaks": [{"chain": b.chain, "seq": b.seq, "reason": b.reason} for b in breaks],
    }
    lines = [f"{sum(counts.values())} events in {len(counts)} chains"]
    if report.archived:
        lines.append(
            f"{sum(report.archived.values())} earlier events archived (pruned by retention); "
            "each chain verified from its first event still in the log"
        )
    lines += [f"BREAK in chain {b.chain} at event {b.seq}: {b.reason}" for b in breaks]
    if not breaks:
        lines.append("every chain is intact")
    emit(data, as_json, "\n".join(lines))
    ctx.exit(EXIT_REFUSED if breaks else EXIT_OK)
