"""`docbroker rejected list|show|replay`: the dead letters of the `rejected` topic.

Registered on broker.cli's command group (which imports this module at its end).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from broker.cli.base import _actor, cli, emit, json_option, run_with_log, settings_of
from broker.core.errors import NotFound
from broker.views.dead_letters import DeadLetter, dead_letters, select


@cli.group()
def rejected() -> None:
    """Dead letters: what was refused (at the door, in the pipeline, by the national
    axis), with its bytes and problems."""


async def _read(log: Any, topics: Any) -> list[tuple[DeadLetter, bytes]]:
    from broker.views.audit import read_all

    return [(d, r.value or b"") for d, r in dead_letters(await read_all(log, topics.rejected))]


@rejected.command("list")
@click.option("--stage", type=click.Choice(["accept", "pipeline", "upstream"]))
@click.option("--sender", help="only this sender's (its code as the package names it)")
@click.option("--code", help="only those with this problem code")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
@click.pass_context
def rejected_list(
    ctx: click.Context,
    stage: str | None,
    sender: str | None,
    code: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The newest dead letters first: when, stage, message id, sender, document, codes."""
    letters = [d for d, _ in run_with_log(ctx, _read)]
    found = select(letters, stage=stage, sender=sender, code=code, limit=limit)
    text = "\n".join(d.line() for d in found) if found else "no dead letters"
    emit([d.to_json() for d in found], as_json, text)


@rejected.command("show")
@click.argument("message_id")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="write its bytes here"
)
@json_option
@click.pass_context
def rejected_show(ctx: click.Context, message_id: str, output: Path | None, as_json: bool) -> None:
    """One dead letter: its problems with their locations; -o writes the bytes."""
    found = [(d, data) for d, data in run_with_log(ctx, _read) if d.message_id == message_id]
    if not found:
        raise NotFound(f"no dead letter with message id {message_id}")
    letter, data = found[-1]
    if output is not None:
        output.write_bytes(data)
    lines = [letter.line(), f"size {letter.size} bytes, sha256 {letter.sha256 or '-'}"]
    if letter.caller:
        lines.append(f"caller {letter.caller}")
    for p in letter.problems:
        where = p.get("location") or {}
        at = ":".join(str(where[k]) for k in ("line", "column") if where.get(k))
        path = where.get("path") or ""
        lines.append(f"  {p.get('code')}: {p.get('message')} {at} {path}".rstrip())
    if output is not None:
        lines.append(f"bytes written to {output}")
    emit(letter.to_json(), as_json, "\n".join(lines))


@rejected.command("replay")
@click.argument("message_ids", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="say what each would become; change nothing")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=15.0,
    show_default=True,
    help="seconds to wait for the pipeline to take the replays",
)
@json_option
@click.pass_context
def rejected_replay(
    ctx: click.Context, message_ids: tuple[str, ...], dry_run: bool, wait: float, as_json: bool
) -> None:
    """Send dead letters again, once each: an upstream one back to the national axis, a
    refused submission back through the pipeline (checked again from scratch; one that
    would still be refused is not replayed). Exit 1 if any is not found or still refused."""
    from broker.pipeline.build import build_processor
    from broker.service.replay import replay
    from broker.state.directory import read_directory

    processor = build_processor(settings_of(ctx))

    async def work(log: Any, topics: Any) -> Any:
        directory = await read_directory(log, topics.directory)
        return await replay(
            log,
            topics,
            directory,
            processor,
            message_ids,
            dry_run=dry_run,
            actor=_actor(),
            wait=wait,
        )

    results = run_with_log(ctx, work)
    emit([r.to_json() for r in results], as_json, "\n".join(r.line() for r in results))
    if not all(r.ok for r in results):
        ctx.exit(1)
