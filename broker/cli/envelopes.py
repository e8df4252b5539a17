"""`docbroker validate` and `inspect`: edXML packages checked and described, offline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from broker.cli.base import (
    cli,
    emit,
    json_option,
    settings_of,
)
from broker.clock import utc_now
from broker.core.errors import EXIT_OK, EXIT_REFUSED

if TYPE_CHECKING:
    pass


# --------------------------------------------------------------------- edXML


def validator_of(ctx: click.Context) -> Any:
    from broker.edxml.validator import EnvelopeValidator
    from broker.pipeline.build import envelope_limits

    return EnvelopeValidator(envelope_limits(settings_of(ctx)), clock=utc_now)


def validate_file(validator: Any, path: Path) -> Any:
    """The verdict on a file; one over the size limit is refused without reading it."""
    from broker.core.problems import Problem
    from broker.edxml.validator import Verdict

    size, limit = path.stat().st_size, validator.limits.max_bytes
    if size > limit:
        problem = Problem("too-large", f"the package has {size} bytes; the limit is {limit}")
        return Verdict(None, (problem,))
    return validator.validate(path.read_bytes())


def problem_lines(name: str, problems: Any, label: str = "") -> list[str]:
    """`FILE:LINE:COL: [label] code: message [path]`, one line each; problems and
    warnings as values or as the JSON of an answer (whatever its codes)."""
    out = []
    for p in problems:
        d = p if isinstance(p, dict) else p.to_dict()
        loc = d.get("location") or {}
        where = f"{name}:{loc['line']}:{loc.get('column') or 0}" if loc.get("line") else name
        path = f" [{loc['path']}]" if loc.get("path") else ""
        out.append(f"{where}: {label}{d['code']}: {d['message']}{path}")
    return out


def finding_lines(name: str, verdict: Any) -> list[str]:
    """A verdict's problems, then its warnings (marked as such)."""
    return problem_lines(name, verdict.problems) + problem_lines(
        name, verdict.warnings, "warning: "
    )


def findings(verdict: Any) -> dict[str, Any]:
    return {
        "problems": [p.to_dict() for p in verdict.problems],
        "warnings": [w.to_dict() for w in verdict.warnings],
    }


strict_option = click.option(
    "--strict", is_flag=True, help="warnings refuse, as for a sender whose policy is strict"
)


@cli.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@strict_option
@json_option
@click.pass_context
def validate(ctx: click.Context, files: tuple[Path, ...], strict: bool, as_json: bool) -> None:
    """Check edXML packages: exit 0 when all are valid (warnings or not), 1 when any
    is refused."""
    validator = validator_of(ctx)
    results = []
    refused = False
    for path in files:
        verdict = validate_file(validator, path)
        verdict = verdict.strict() if strict else verdict
        refused |= not verdict.ok
        env = verdict.envelope
        results.append(
            {
                "file": str(path),
                "valid": verdict.ok,
                "kind": str(env.kind) if env else None,
                "sender": env.sender_id if env else None,
                "recipients": list(env.recipient_ids) if env else [],
                **findings(verdict),
            }
        )
        if as_json:
            continue
        if verdict.ok and env is not None:
            warned = f" ({len(verdict.warnings)} warnings)" if verdict.warnings else ""
            click.echo(
                f"{path}: valid {env.kind} from {env.sender_id} to "
                f"{', '.join(env.recipient_ids)}{warned}"
            )
        for line in finding_lines(str(path), verdict):
            click.echo(line, err=True)
    emit(results, as_json)
    ctx.exit(EXIT_REFUSED if refused else EXIT_OK)


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@strict_option
@json_option
@click.pass_context
def inspect(ctx: click.Context, file: Path, strict: bool, as_json: bool) -> None:
    """Show what an edXML package says: parties, document, business, attachments."""
    from broker.edxml.describe import describe

    validator = validator_of(ctx)
    verdict = validate_file(validator, file)
    verdict = verdict.strict() if strict else verdict
    env = verdict.envelope
    if as_json:
        emit(
            {
                "file": str(file),
                "valid": verdict.ok,
                "envelope": env.to_dict() if env else None,
                **findings(verdict),
            },
            True,
        )
    else:
        if env is not None:
            click.echo(describe(env))
        for line in finding_lines(str(file), verdict):
            click.echo(line, err=True)
    ctx.exit(EXIT_OK if verdict.ok else EXIT_REFUSED)


# --------------------------------------------------------------------- keys and signatures
