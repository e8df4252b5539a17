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
from typing import Any, TypeVar

import click

from broker import __version__
from broker.config import Settings, load_settings, render_toml, to_mapping
from broker.errors import EXIT_OK, EXIT_REFUSED, DocbrokerError

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
    from broker.edxml.validator import Verdict
    from broker.problems import Problem

    size, limit = path.stat().st_size, validator.limits.max_bytes
    if size > limit:
        problem = Problem("too-large", f"the package has {size} bytes; the limit is {limit}")
        return Verdict(None, (problem,))
    return validator.validate(path.read_bytes())


def problem_lines(name: str, problems: Any) -> list[str]:
    out = []
    for p in problems:
        loc = p.location
        where = f"{name}:{loc.line}:{loc.column or 0}" if loc and loc.line else name
        path = f" [{loc.path}]" if loc and loc.path else ""
        out.append(f"{where}: {p.code}: {p.message}{path}")
    return out


@cli.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@json_option
@click.pass_context
def validate(ctx: click.Context, files: tuple[Path, ...], as_json: bool) -> None:
    """Check edXML packages: exit 0 when all are valid, 1 when any is refused."""
    validator = validator_of(ctx)
    results = []
    refused = False
    for path in files:
        verdict = validate_file(validator, path)
        refused |= not verdict.ok
        env = verdict.envelope
        results.append(
            {
                "file": str(path),
                "valid": verdict.ok,
                "kind": str(env.kind) if env else None,
                "sender": env.sender_id if env else None,
                "recipients": list(env.recipient_ids) if env else [],
                "problems": [p.to_dict() for p in verdict.problems],
            }
        )
        if as_json:
            continue
        if verdict.ok and env is not None:
            click.echo(
                f"{path}: valid {env.kind} from {env.sender_id} to {', '.join(env.recipient_ids)}"
            )
        else:
            for line in problem_lines(str(path), verdict.problems):
                click.echo(line, err=True)
    emit(results, as_json)
    ctx.exit(EXIT_REFUSED if refused else EXIT_OK)


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_context
def inspect(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Show what an edXML package says: parties, document, business, attachments."""
    from broker.edxml.describe import describe

    validator = validator_of(ctx)
    verdict = validate_file(validator, file)
    env = verdict.envelope
    if as_json:
        emit(
            {
                "file": str(file),
                "valid": verdict.ok,
                "envelope": env.to_dict() if env else None,
                "problems": [p.to_dict() for p in verdict.problems],
            },
            True,
        )
    else:
        if env is not None:
            click.echo(describe(env))
        for line in problem_lines(str(file), verdict.problems):
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
    from broker.trust.devkeys import init_dev_keys

    settings = settings_of(ctx)
    written = init_dev_keys(
        settings.keys_dir,
        broker_id=settings.organ_id,
        force=force,
        agencies=_agency_specs(agencies),
    )
    emit(
        {"created": written.created, "kept": written.kept, "agencies": written.agencies},
        as_json,
        "\n".join(
            [
                *(f"created {p}" for p in written.created),
                *(f"kept    {p}" for p in written.kept),
                *(f"agency  {c}: sha256 {f}" for c, f in written.agencies.items()),
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
    from broker.trust.devkeys import issue_agency

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

    from broker.trust.certs import fingerprint, subject_text
    from broker.trust.context import load_trust

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
    from broker.trust.context import load_trust

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
    paths = (
        list(ca_files)
        or [Path(p) for p in settings.trust.ca_files]
        or [settings.keys_dir / "ca.cert.pem"]
    )
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


# --------------------------------------------------------------------- client


def client_of(ctx: click.Context, url: str | None) -> Any:
    from broker.client import DocbrokerClient

    if url is None:
        http = settings_of(ctx).http
        host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host  # noqa: S104
        url = f"http://{host}:{http.port}"
    return DocbrokerClient(url)


url_option = click.option(
    "--url",
    envvar="DOCBROKER_URL",
    help="docbroker's base URL (env DOCBROKER_URL; default from config)",
)
agency_option = click.option("--agency", required=True, help="the agency code of the mailbox")


@cli.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@url_option
@json_option
@click.pass_context
def send(ctx: click.Context, files: tuple[Path, ...], url: str | None, as_json: bool) -> None:
    """Submit edXML files; print each message id."""
    from broker.client import ApiProblem

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
