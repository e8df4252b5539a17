"""`docbroker keys init|issue|show`, `sign`, `verify`: key material and signatures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from broker.cli.base import (
    cli,
    emit,
    json_option,
    keys,
    settings_of,
)
from broker.cli.envelopes import validator_of
from broker.clock import utc_now
from broker.core.errors import EXIT_OK, EXIT_REFUSED, DocbrokerError

if TYPE_CHECKING:
    pass


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

    A certificate's revocation is checked as for a required signature (the CRLs of
    trust.crl_files, trust.unchecked_revocation). Exit 1 when any signature is not valid."""
    from broker.keys.pem import trust_store_from_files
    from broker.trust.xmldsig import SignatureVerifier

    settings = settings_of(ctx)
    paths = list(ca_files) or settings.trusted_ca_files
    crls = settings.trusted_crl_files  # the development CA's only once keys init wrote it
    store = trust_store_from_files(
        [p for p in paths if p.exists()],
        [p for p in crls if settings.trust.crl_files or p.exists()],
        unchecked_revocation=settings.trust.unchecked_revocation,
    )
    verifier = SignatureVerifier(store)
    report = []
    bad = False
    for path in files:
        try:
            results = verifier.verify_all(path.read_bytes(), allow_sha1=legacy, at=utc_now())
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
            if r.valid and r.revocation == "unchecked":
                verdict += f" (revocation not checked: {r.revocation_detail})"
            click.echo(
                f"{path}: {r.role} signature ({r.profile}, {r.algorithm or '?'}/"
                f"{r.digest or '?'}) by {r.signer or '(unknown signer)'} at {r.path}: "
                f"{verdict}"
            )
    emit(report, as_json)
    ctx.exit(EXIT_REFUSED if bad else EXIT_OK)


# --------------------------------------------------------------------- directory and audit
