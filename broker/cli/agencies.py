"""`docbroker agencies list|show|add|update|suspend|activate|import|export`: the
directory, read and changed through the log."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from broker.cli.base import (
    _actor,
    _current_directory,
    agencies,
    emit,
    json_option,
    run_with_log,
)

if TYPE_CHECKING:
    from broker.directory.model import Agency


def _agency_line(a: Any) -> str:
    where = "local" if a.local else "external"
    state = "" if a.active else "  SUSPENDED"
    return f"{a.code:<16} {a.code102:<15} {a.level:<10} {where:<8} {a.name}{state}"


@agencies.command("list")
@click.option("--parent", help="only the children of this agency")
@click.option(
    "--external", "only_external", is_flag=True, help="only agencies outside the province"
)
@json_option
@click.pass_context
def agencies_list(
    ctx: click.Context, parent: str | None, only_external: bool, as_json: bool
) -> None:
    """List agencies (by code)."""
    directory = _current_directory(ctx)
    rows = [
        a
        for a in directory
        if (parent is None or a.parent == parent) and (not only_external or not a.local)
    ]
    emit(
        [a.to_dict() for a in rows],
        as_json,
        "\n".join(_agency_line(a) for a in rows) or "the directory is empty",
    )


@agencies.command("show")
@click.argument("code")
@json_option
@click.pass_context
def agencies_show(ctx: click.Context, code: str, as_json: bool) -> None:
    """One agency, found by either of its codes, with its place in the hierarchy."""
    from broker.core.errors import NotFound

    directory = _current_directory(ctx)
    agency = directory.find(code)
    if agency is None:
        raise NotFound(f"no agency {code} in the directory")
    path = " > ".join(a.name for a in reversed(directory.ancestors(agency)))
    children = directory.children(agency.code)
    data = {**agency.to_dict(), "path": path, "children": [c.code for c in children]}
    text = "\n".join(
        [
            *(
                f"{k:<17}{v}"
                for k, v in agency.to_dict().items()
                if v not in ("", [], None) and k not in ("tokens", "systems")
            ),
            *([f"{'strict':<17}default (validation.strict)"] if agency.strict is None else []),
            f"{'api tokens':<17}{len(agency.tokens)} (docbroker agencies token list)",
            f"{'sdk systems':<17}{_systems_text(agency) or '-'}",
            f"{'within':<17}{path or '-'}",
            f"{'children':<17}{len(children)}",
        ]
    )
    emit(data, as_json, text)


def _systems_text(agency: Agency) -> str:
    """Each SDK system with how it may call: plain HTTP is shown loudly."""
    out = []
    for s in agency.systems:
        where = f" from {', '.join(s.networks)}" if s.networks else ""
        how = f"PLAIN HTTP allowed{where}" if s.plain_http else f"HTTPS only{where}"
        extra = ", manages sub-agencies" if s.manage_agencies else ""
        out.append(f"{s.system_id} ({how}{extra}{', revoked' if s.revoked else ''})")
    return "; ".join(out)


_FIELD_OPTIONS = [
    click.option("--name"),
    click.option("--code102", help="the QCVN 102 code (NNN.NN.NN.Lnn)"),
    click.option("--parent", help="code of the parent agency"),
    click.option("--level", help="a label: tỉnh, sở, huyện, xã, hội, ..."),
    click.option("--kind", type=click.Choice(["state", "association", "socio-political", "other"])),
    click.option("--local/--external", "local", default=None, help="inside the province or not"),
    click.option("--signature-policy", type=click.Choice(["", "required", "optional", "ignored"])),
    click.option(
        "--strict",
        type=click.Choice(["true", "false", "default"]),
        help="warnings refuse its packages (true), are recorded only (false), "
        "or as validation.strict says (default)",
    ),
    click.option(
        "--certificate",
        "certificates",
        multiple=True,
        help="SHA-256 fingerprint of a signing certificate (repeatable; replaces)",
    ),
    click.option("--email"),
    click.option("--telephone"),
    click.option("--address"),
    click.option("--website"),
]


def field_options(fn: Any) -> Any:
    for option in reversed(_FIELD_OPTIONS):
        fn = option(fn)
    return fn


def _changes(fields: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in fields.items() if v is not None and k != "certificates"}
    if fields.get("certificates"):
        out["certificates"] = list(fields["certificates"])
    if out.get("strict") == "default":
        out["strict"] = ""  # empty: back to the configured default
    return out


def _write_agency(ctx: click.Context, new_data: dict[str, Any], *, must_exist: bool) -> Any:
    from broker.core.errors import InputRefused, NotFound
    from broker.core.problems import Problem
    from broker.directory.model import agency_from_mapping
    from broker.state.directory import put_agencies, read_directory

    async def work(log: Any, topics: Any) -> Any:
        directory = await read_directory(log, topics.directory)
        existing = directory.by_code.get(new_data["code"])
        if must_exist and existing is None:
            raise NotFound(f"no agency {new_data['code']} in the directory (add it first)")
        if not must_exist and existing is not None:
            raise InputRefused(
                [Problem("invalid-value", f"{new_data['code']} exists: use agencies update")]
            )
        base = existing.to_dict() if existing else {}
        agency, problems = agency_from_mapping({**base, **new_data}, new_data["code"])
        if agency is None:
            raise InputRefused(problems)
        conflicts = directory.conflicts(agency)
        if agency.parent and directory.by_code.get(agency.parent) is None:
            conflicts.append(f"parent {agency.parent} is not in the directory")
        if conflicts:
            raise InputRefused([Problem("invalid-value", c) for c in conflicts])
        await put_agencies(log, topics.directory, [agency], _actor())
        return agency

    return run_with_log(ctx, work)


@agencies.command("add")
@click.argument("code")
@field_options
@json_option
@click.pass_context
def agencies_add(ctx: click.Context, code: str, as_json: bool, **fields: Any) -> None:
    """Add an agency (CODE in the QĐ 20/2020 form)."""
    agency = _write_agency(ctx, {"code": code, **_changes(fields)}, must_exist=False)
    emit(agency.to_dict(), as_json, f"added {_agency_line(agency)}")


@agencies.command("update")
@click.argument("code")
@field_options
@click.option("--status", type=click.Choice(["active", "suspended"]))
@json_option
@click.pass_context
def agencies_update(ctx: click.Context, code: str, as_json: bool, **fields: Any) -> None:
    """Change fields of an agency; others are kept."""
    agency = _write_agency(ctx, {"code": code, **_changes(fields)}, must_exist=True)
    emit(agency.to_dict(), as_json, f"updated {_agency_line(agency)}")


@agencies.command("suspend")
@click.argument("code")
@json_option
@click.pass_context
def agencies_suspend(ctx: click.Context, code: str, as_json: bool) -> None:
    """Suspend an agency: envelopes to it are refused (status 02), from it too."""
    agency = _write_agency(ctx, {"code": code, "status": "suspended"}, must_exist=True)
    emit(agency.to_dict(), as_json, f"suspended {_agency_line(agency)}")


@agencies.command("activate")
@click.argument("code")
@json_option
@click.pass_context
def agencies_activate(ctx: click.Context, code: str, as_json: bool) -> None:
    """Make a suspended agency active again."""
    agency = _write_agency(ctx, {"code": code, "status": "active"}, must_exist=True)
    emit(agency.to_dict(), as_json, f"activated {_agency_line(agency)}")


@agencies.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="show what would change, change nothing")
@json_option
@click.pass_context
def agencies_import(ctx: click.Context, file: Path, dry_run: bool, as_json: bool) -> None:
    """Import agencies from TOML ([[agency]]) or CSV; unchanged ones are skipped."""
    from broker.core.errors import InputRefused
    from broker.core.problems import Problem
    from broker.directory.book import Directory
    from broker.directory.io import check_unique, parse_file
    from broker.state.directory import put_agencies, read_directory

    agencies_in, problems = parse_file(file.name, file.read_text(encoding="utf-8"))
    problems += check_unique(agencies_in)
    if problems:
        raise InputRefused(problems)

    async def work(log: Any, topics: Any) -> dict[str, Any]:
        directory = await read_directory(log, topics.directory)
        merged = Directory.of([*directory, *agencies_in])
        issues = [
            f"{a.code}: parent {a.parent} is not in the directory or the file"
            for a in agencies_in
            if a.parent and merged.by_code.get(a.parent) is None
        ]
        for a in agencies_in:
            issues += [f"{a.code}: {c}" for c in directory.without(a.code).conflicts(a)]
        if issues:
            raise InputRefused([Problem("invalid-value", i) for i in issues])
        new = [a for a in agencies_in if a.code not in directory.by_code]
        changed = [
            a for a in agencies_in if a.code in directory.by_code and directory.by_code[a.code] != a
        ]
        if not dry_run and (new or changed):
            await put_agencies(log, topics.directory, [*new, *changed], _actor())
        return {
            "new": [a.code for a in new],
            "changed": [a.code for a in changed],
            "unchanged": len(agencies_in) - len(new) - len(changed),
            "dry_run": dry_run,
        }

    result = run_with_log(ctx, work)
    verb = "would import" if dry_run else "imported"
    emit(
        result,
        as_json,
        f"{file}: {verb} {len(result['new'])} new, {len(result['changed'])} "
        f"changed, {result['unchanged']} unchanged",
    )


@agencies.command("export")
@click.option("--format", "fmt", type=click.Choice(["toml", "csv"]), default="toml")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def agencies_export(ctx: click.Context, fmt: str, output: Path | None) -> None:
    """The whole directory as TOML or CSV (importable again)."""
    from broker.directory.io import to_csv, to_toml

    directory = _current_directory(ctx)
    text = to_csv(directory) if fmt == "csv" else to_toml(directory)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"{output}: {len(directory)} agencies", err=True)
