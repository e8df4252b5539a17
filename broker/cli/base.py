"""The `docbroker` command (also `python -m broker`).

Exit status: 0 success, 1 the input was refused (invalid, not authorised,
not found), 2 usage or environment error. Errors name a stable problem code.
`--json` makes every command that prints results print JSON, errors included.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from broker import __version__
from broker.config import Settings, load_settings, render_toml, to_mapping
from broker.core.errors import EXIT_OK, EXIT_REFUSED, DocbrokerError

if TYPE_CHECKING:
    from broker.directory.model import Agency

F = TypeVar("F", bound=Callable[..., Any])
JSON_KEY = "docbroker.json"


class DocbrokerGroup(click.Group):
    """Turns DocbrokerError into a message with its code and its exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DocbrokerError as exc:
            if ctx.meta.get(JSON_KEY):
                click.echo(
                    json.dumps(
                        {
                            "ok": False,
                            "code": exc.code,
                            "problems": [p.to_dict() for p in exc.problems],
                        },
                        ensure_ascii=False,
                    )
                )
            for problem in exc.problems:
                click.echo(f"docbroker: {problem}", err=True)
            ctx.exit(exc.exit_code)


def json_option(fn: F) -> F:
    def remember(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        ctx.meta[JSON_KEY] = value
        return value

    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        callback=remember,
        expose_value=True,
        is_eager=True,
        help="print results as JSON",
    )(fn)


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    elif text is not None:
        click.echo(text)


@click.group(cls=DocbrokerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="docbroker")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="DOCBROKER_CONFIG",
    help="TOML configuration file (env DOCBROKER_CONFIG)",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """docbroker: the edXML document-interchange broker of a province."""
    ctx.obj = {"config_path": config_path}


def settings_of(ctx: click.Context) -> Settings:
    root = ctx.find_root()
    cached = root.obj.get("settings")
    if cached is None:
        cached = load_settings(root.obj["config_path"])
        root.obj["settings"] = cached
    return cached


# --------------------------------------------------------------------- daemon


@cli.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the broker until SIGTERM or SIGINT."""
    from broker.daemon import serve as run
    from broker.logsetup import configure_logging

    settings = settings_of(ctx)
    configure_logging(settings.logging)
    ctx.exit(asyncio.run(run(settings)))


@cli.command("axis-simulator")
@click.option(
    "--config",
    "sim_config",
    type=click.Path(exists=True, dir_okay=False),
    default="config/axis-simulator.example.toml",
    show_default=True,
    help="the simulator's systems and state file (TOML)",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8090, show_default=True, help="0 = a free port")
@click.pass_context
def axis_simulator(ctx: click.Context, sim_config: str, host: str, port: int) -> None:
    """Run a simulator of the national axis (VDXP) for tests and demos."""
    from adapters.national_axis.simulator import main

    ctx.exit(main(["--config", sim_config, "--host", host, "--port", str(port)]))


# --------------------------------------------------------------------- config


@cli.group()
def config() -> None:
    """Check or print the configuration."""


@config.command("check")
@json_option
@click.pass_context
def config_check(ctx: click.Context, as_json: bool) -> None:
    """Load the configuration and report the first wrong key or value."""
    settings = settings_of(ctx)
    emit(
        {"ok": True, "backend": settings.backend.type},
        as_json,
        f"configuration valid (backend: {settings.backend.type})",
    )


@config.command("show")
@click.option("--defaults", is_flag=True, help="the built-in defaults, ignoring file and env")
@json_option
@click.pass_context
def config_show(ctx: click.Context, defaults: bool, as_json: bool) -> None:
    """Print the effective configuration as annotated TOML (or JSON)."""
    settings = Settings() if defaults else settings_of(ctx)
    emit(to_mapping(settings), as_json, None if as_json else render_toml(settings))


# --------------------------------------------------------------------- edXML


def validator_of(ctx: click.Context) -> Any:
    from broker.edxml.validator import EnvelopeValidator
    from broker.runtime import envelope_limits

    return EnvelopeValidator(envelope_limits(settings_of(ctx)))


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


@cli.group()
def keys() -> None:
    """Development keys, and what the configured keys and CAs are."""


def _agency_specs(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        code, _, name = v.partition("=")
        out[code.strip()] = name.strip()
    return out


@keys.command("init")
@click.option(
    "--agency",
    "agencies",
    multiple=True,
    metavar="CODE[=NAME]",
    help="also issue a certificate for this agency (repeatable)",
)
@click.option("--force", is_flag=True, help="replace existing keys (a new CA)")
@json_option
@click.pass_context
def keys_init(ctx: click.Context, agencies: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Make a development CA, the broker's key and certificate (kept if present)."""
    from broker.keys.devkeys import init_dev_keys

    settings = settings_of(ctx)
    written = init_dev_keys(
        settings.keys_dir,
        broker_id=settings.organ_id,
        force=force,
        agencies=_agency_specs(agencies),
    )
    emit(
        {
            "created": written.created,
            "kept": written.kept,
            "agencies": written.agencies,
            "admin_token": written.admin_token or None,
        },
        as_json,
        "\n".join(
            [
                *(f"created {p}" for p in written.created),
                *(f"kept    {p}" for p in written.kept),
                *(f"agency  {c}: sha256 {f}" for c, f in written.agencies.items()),
                *(
                    [f"admin token (in {settings.keys_dir}/admin.token): {written.admin_token}"]
                    if written.admin_token
                    else []
                ),
            ]
        ),
    )


@keys.command("issue")
@click.argument("code")
@click.option("--name", default="", help="the agency's name (the certificate's CN)")
@click.option("--force", is_flag=True, help="replace an existing certificate")
@json_option
@click.pass_context
def keys_issue(ctx: click.Context, code: str, name: str, force: bool, as_json: bool) -> None:
    """Issue an agency certificate from the development CA (subject UID = CODE)."""
    from broker.keys.devkeys import issue_agency

    keys_dir = settings_of(ctx).keys_dir
    fp = issue_agency(keys_dir, code, name, force=force)
    emit(
        {
            "agency": code,
            "fingerprint": fp,
            "files": [
                str(keys_dir / "agencies" / f"{code}.{ext}")
                for ext in ("key.pem", "cert.pem", "p12")
            ],
        },
        as_json,
        f"{code}: sha256 {fp} in {keys_dir / 'agencies'}",
    )


@keys.command("show")
@json_option
@click.pass_context
def keys_show(ctx: click.Context, as_json: bool) -> None:
    """The broker's certificate and the trusted CAs, with expiry; exit 1 if unusable."""
    from datetime import UTC, datetime

    from broker.keys.trust import load_trust
    from broker.trust.certs import fingerprint, subject_text

    trust = load_trust(settings_of(ctx))
    now = datetime.now(UTC)
    expiring = {id(c) for _, c in trust.expiring(now)}
    rows = [
        {
            "role": role,
            "subject": subject_text(c),
            "fingerprint": fingerprint(c),
            "not_after": c.not_valid_after_utc.isoformat(),
            "days_left": int((c.not_valid_after_utc - now).total_seconds() // 86400),
            "expiring": id(c) in expiring,
        }
        for role, c in trust.certificates()
    ]
    text = "\n".join(
        f"{r['role']:<7} {r['subject']}  until {r['not_after'][:10]} ({r['days_left']} days)"
        + ("  EXPIRING" if r["expiring"] else "")
        + f"\n        sha256 {r['fingerprint']}"
        for r in rows
    )
    emit(rows, as_json, text)


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the signed package here (default: standard output)",
)
@click.pass_context
def sign(ctx: click.Context, file: Path, output: Path | None) -> None:
    """Sign a package with the broker's key (enveloped XML-DSig, last child of the root)."""
    from broker.keys.trust import load_trust

    settings = settings_of(ctx)
    trust = load_trust(settings)
    validator_of(ctx).check(file.read_bytes())
    signed = trust.signer.sign(file.read_bytes())
    if output is None:
        sys.stdout.buffer.write(signed)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(signed)
        click.echo(
            f"{output}: signed by {trust.material.certificate.subject.rfc4514_string()}", err=True
        )


@cli.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--ca",
    "ca_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="trust these CA certificates instead of the configured ones",
)
@click.option("--legacy", is_flag=True, help="accept SHA-1 signatures")
@json_option
@click.pass_context
def verify(
    ctx: click.Context,
    files: tuple[Path, ...],
    ca_files: tuple[Path, ...],
    legacy: bool,
    as_json: bool,
) -> None:
    """Every signature in each package: signer, algorithm, valid or why not.

    Exit 1 when any signature is not valid."""
    from broker.trust.store import TrustStore
    from broker.trust.xmldsig import SignatureVerifier

    settings = settings_of(ctx)
    paths = list(ca_files) or settings.trusted_ca_files
    store = TrustStore.from_files(
        [p for p in paths if p.exists()], [Path(p) for p in settings.trust.crl_files]
    )
    verifier = SignatureVerifier(store)
    report = []
    bad = False
    for path in files:
        try:
            results = verifier.verify_all(path.read_bytes(), allow_sha1=legacy)
        except DocbrokerError as exc:
            bad = True
            report.append(
                {
                    "file": str(path),
                    "error": exc.code,
                    "problems": [p.to_dict() for p in exc.problems],
                    "signatures": [],
                }
            )
            if not as_json:
                click.echo(f"{path}: {exc.problems[0]}", err=True)
            continue
        bad |= any(not r.valid for r in results)
        report.append({"file": str(path), "signatures": [r.to_dict() for r in results]})
        if as_json:
            continue
        if not results:
            click.echo(f"{path}: no signature")
        for r in results:
            verdict = "valid" if r.valid else f"NOT VALID: {r.reason}"
            click.echo(
                f"{path}: {r.role} signature ({r.profile}, {r.algorithm or '?'}/"
                f"{r.digest or '?'}) by {r.signer or '(unknown signer)'} at {r.path}: "
                f"{verdict}"
            )
    emit(report, as_json)
    ctx.exit(EXIT_REFUSED if bad else EXIT_OK)


# --------------------------------------------------------------------- directory and audit


def one_off_instance(settings: Settings) -> Settings:
    """Settings for a short-lived process beside a running daemon: its own instance
    name, so that its transactional producer does not fence the daemon's."""
    import dataclasses
    import os

    return dataclasses.replace(settings, instance=f"{settings.instance_name}.cli.{os.getpid()}")


def run_with_log(ctx: click.Context, work: Any) -> Any:
    """Open the configured durable log (creating topics), run `work(log, topics)`, close."""
    from broker.core.topics import Topics
    from broker.log import open_log
    from broker.log.topics import topic_specs

    settings = one_off_instance(settings_of(ctx))
    topics = Topics.with_prefix(settings.backend.topic_prefix)

    async def main() -> Any:
        durable = open_log(settings)
        await durable.start()
        try:
            await durable.ensure_topics(topic_specs(settings, topics))
            return await work(durable, topics)
        finally:
            await durable.close()

    return asyncio.run(main())


def _current_directory(ctx: click.Context) -> Any:
    from broker.state.directory import read_directory

    return run_with_log(ctx, lambda log, topics: read_directory(log, topics.directory))


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@cli.group()
def agencies() -> None:
    """The agency directory: list, show, add, update, suspend, import, export."""


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


@cli.command()
@click.argument("document_id")
@json_option
@click.pass_context
def trace(ctx: click.Context, document_id: str, as_json: bool) -> None:
    """The life of a document: every event, across recipients and statuses."""
    from broker.core.errors import NotFound
    from broker.views.audit import document_events, trace_lines

    events = run_with_log(ctx, lambda log, topics: document_events(log, topics, document_id))
    if not events:
        raise NotFound(f"no event for document {document_id}")
    emit(events, as_json, "\n".join(trace_lines(events)))


@cli.group()
def audit() -> None:
    """The audit trail."""


@audit.command("verify")
@json_option
@click.pass_context
def audit_verify(ctx: click.Context, as_json: bool) -> None:
    """Check every hash chain of the audit trail; exit 1 at the first break of any."""
    from broker.views.audit import verify_audit

    counts, breaks = run_with_log(ctx, lambda log, topics: verify_audit(log, topics))
    data = {
        "chains": counts,
        "events": sum(counts.values()),
        "breaks": [{"chain": b.chain, "seq": b.seq, "reason": b.reason} for b in breaks],
    }
    lines = [f"{sum(counts.values())} events in {len(counts)} chains"]
    lines += [f"BREAK in chain {b.chain} at event {b.seq}: {b.reason}" for b in breaks]
    if not breaks:
        lines.append("every chain is intact")
    emit(data, as_json, "\n".join(lines))
    ctx.exit(EXIT_REFUSED if breaks else EXIT_OK)


# --------------------------------------------------------------------- client


def client_of(ctx: click.Context, url: str | None) -> Any:
    from broker.cli.client import DocbrokerClient, tls_context

    p = ctx.meta.get(CLIENT_KEY, {})
    if url is None:
        http = settings_of(ctx).http
        host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host  # noqa: S104
        url = f"{'https' if http.tls else 'http'}://{host}:{http.port}"
    tls = None
    if url.startswith("https:"):
        tls = tls_context(p.get("cacert"), p.get("cert"), p.get("key"))
    return DocbrokerClient(url, token=p.get("token"), ssl_context=tls)


CLIENT_KEY = "docbroker.client"


def _remember_client_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta.setdefault(CLIENT_KEY, {})[param.name] = value
    return value


def _client_option(*names: str, **kw: Any) -> Callable[[F], F]:
    return click.option(*names, expose_value=False, callback=_remember_client_option, **kw)


_CLIENT_OPTIONS = [
    click.option(
        "--url",
        envvar="DOCBROKER_URL",
        help="docbroker's base URL (env DOCBROKER_URL; default from config)",
    ),
    _client_option(
        "--token",
        envvar="DOCBROKER_TOKEN",
        help="the agency's API token (env DOCBROKER_TOKEN)",
    ),
    _client_option(
        "--cacert",
        envvar="DOCBROKER_CA_FILE",
        type=click.Path(exists=True, dir_okay=False),
        help="CA bundle to check an https server with (env DOCBROKER_CA_FILE)",
    ),
    _client_option(
        "--cert",
        envvar="DOCBROKER_CLIENT_CERT",
        type=click.Path(exists=True, dir_okay=False),
        help="client certificate (PEM) for mTLS instead of a token (env DOCBROKER_CLIENT_CERT)",
    ),
    _client_option(
        "--key",
        envvar="DOCBROKER_CLIENT_KEY",
        type=click.Path(exists=True, dir_okay=False),
        help="the client certificate's private key (PEM) (env DOCBROKER_CLIENT_KEY)",
    ),
]


def url_option(fn: F) -> F:
    """The options of a command that talks to docbroker as a client."""
    for option in reversed(_CLIENT_OPTIONS):
        fn = option(fn)
    return fn


agency_option = click.option("--agency", required=True, help="the agency code of the mailbox")


@cli.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@url_option
@json_option
@click.pass_context
def send(ctx: click.Context, files: tuple[Path, ...], url: str | None, as_json: bool) -> None:
    """Submit edXML files; print each message id (and the warnings of each)."""
    from broker.cli.client import ApiProblem

    client = client_of(ctx, url)
    results: list[dict[str, Any]] = []
    worst = EXIT_OK
    for path in files:
        try:
            answer = client.submit(path.read_bytes())
            results.append({"file": str(path), "ok": True, **answer})
            if not as_json:
                click.echo(
                    f"{path}: accepted as {answer['message_id']} "
                    f"(to {', '.join(answer['recipients'])})"
                )
                for line in problem_lines(str(path), answer.get("warnings", []), "warning: "):
                    click.echo(line, err=True)
        except ApiProblem as exc:
            worst = max(worst, exc.exit_code)
            results.append(
                {
                    "file": str(path),
                    "ok": False,
                    "code": exc.code,
                    "problems": [p.to_dict() for p in exc.problems],
                }
            )
            if not as_json:
                for p in exc.problems:
                    click.echo(f"{path}: refused: {p}", err=True)
    emit(results, as_json)
    ctx.exit(worst)


@cli.command()
@agency_option
@click.option("--after", type=int, default=0, help="cursor: list entries after this one")
@click.option("--limit", type=click.IntRange(1, 1000), default=100)
@click.option(
    "--wait",
    type=click.FloatRange(0, 600),
    default=0.0,
    help="long poll: wait up to this many seconds for an entry",
)
@click.option("--all", "include_acked", is_flag=True, help="include acknowledged entries")
@url_option
@json_option
@click.pass_context
def inbox(
    ctx: click.Context,
    agency: str,
    after: int,
    limit: int,
    wait: float,
    include_acked: bool,
    url: str | None,
    as_json: bool,
) -> None:
    """List an agency's mailbox."""
    answer = client_of(ctx, url).inbox(
        agency, after=after, limit=limit, wait=wait, include_acked=include_acked
    )
    lines = [
        f"{e['message_id']}  {e['kind']:8}  from {e['sender']}  {e['document_id']}"
        + ("  (acknowledged)" if e["acknowledged_at"] else "")
        for e in answer["envelopes"]
    ]
    emit(answer, as_json, "\n".join(lines) if lines else f"mailbox of {agency} is empty")


@cli.command()
@agency_option
@click.argument("message_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the envelope to this file (default: standard output)",
)
@url_option
@click.pass_context
def fetch(
    ctx: click.Context, agency: str, message_id: str, output: Path | None, url: str | None
) -> None:
    """Fetch one envelope from a mailbox, byte for byte."""
    resp = client_of(ctx, url).fetch(agency, message_id)
    if output is None:
        sys.stdout.buffer.write(resp.body)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(resp.body)
        click.echo(f"{output}: {len(resp.body)} bytes", err=True)


@cli.command()
@agency_option
@click.argument("message_id")
@url_option
@json_option
@click.pass_context
def ack(ctx: click.Context, agency: str, message_id: str, url: str | None, as_json: bool) -> None:
    """Acknowledge an envelope in a mailbox."""
    answer = client_of(ctx, url).ack(agency, message_id)
    emit(answer, as_json, f"{message_id}: acknowledged at {answer['acknowledged_at']}")


def main() -> None:
    cli(prog_name="docbroker")
