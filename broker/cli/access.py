"""`docbroker agencies token|system …` and `docbroker keys admin-token`: API credentials.

A new secret is printed once, on standard output alone (so that
`TOKEN=$(docbroker agencies token create CODE)` works); what it is for goes to
standard error. The directory keeps only hashes and salts. Registered on the
command groups of broker.cli.base (broker.cli imports this module).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from broker.cli.base import _actor, agencies, emit, json_option, keys, run_with_log, settings_of
from broker.clock import now_ms
from broker.core.errors import ConfigError, NotFound
from broker.directory import credentials as creds
from broker.directory.auth import derive_secret, new_system, new_token
from broker.directory.book import Directory
from broker.directory.model import Agency
from broker.keys.files import ADMIN_TOKENS, SDK_MASTER_KEY, new_admin_token, parse_sdk_master_key
from broker.keys.secrets import read_private


def _when(ms: int) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else None


def _change_one(
    ctx: click.Context, code: str, change: Callable[[Directory, Agency], Agency]
) -> Agency:
    """Apply `change` to the agency `code` (either code form) and write it."""
    from broker.state.directory import change_agencies

    def changed(directory: Directory) -> list[Agency]:
        agency = directory.find(code)
        if agency is None:
            raise NotFound(f"no agency {code} in the directory")
        return [change(directory, agency)]

    (agency,) = run_with_log(
        ctx, lambda log, topics: change_agencies(log, topics.directory, changed, _actor())
    )
    return agency


def _agency(ctx: click.Context, code: str) -> Agency:
    from broker.state.directory import read_directory

    directory = run_with_log(ctx, lambda log, topics: read_directory(log, topics.directory))
    agency = directory.find(code)
    if agency is None:
        raise NotFound(f"no agency {code} in the directory")
    return agency


def _secret_out(secret: str, data: dict[str, Any], as_json: bool, note: str) -> None:
    if as_json:
        emit(data, True)
    else:
        click.echo(note, err=True)
        click.echo(secret)


expires_option = click.option(
    "--expires-days",
    type=click.FloatRange(min=0),
    default=0,
    help="days until it expires (0 = never)",
)

# --------------------------------------------------------------------------- tokens


@agencies.group("token")
def token() -> None:
    """API tokens of an agency (Authorization: Bearer …)."""


def _token_row(t: Any) -> dict[str, Any]:
    return {
        "id": t.id,
        "label": t.label,
        "created_at": _when(t.created_at_ms),
        "expires_at": _when(t.expires_at_ms),
        "revoked": t.revoked,
        "usable": not t.revoked and (not t.expires_at_ms or t.expires_at_ms > now_ms()),
    }


@token.command("create")
@click.argument("code")
@expires_option
@click.option("--label", default="", help="what the token is for (shown in listings)")
@json_option
@click.pass_context
def token_create(
    ctx: click.Context, code: str, expires_days: float, label: str, as_json: bool
) -> None:
    """Make a token for agency CODE; it is shown once."""
    plaintext, tok = new_token(now_ms=now_ms(), expires_days=expires_days, label=label)
    agency = _change_one(ctx, code, lambda _d, a: creds.add_token(a, tok))
    _secret_out(
        plaintext,
        {"agency": agency.code, "token": plaintext, **_token_row(tok)},
        as_json,
        f"token {tok.id} for {agency.code} ({agency.name}); "
        f"expires {_when(tok.expires_at_ms) or 'never'}; shown once:",
    )


@token.command("list")
@click.argument("code")
@json_option
@click.pass_context
def token_list(ctx: click.Context, code: str, as_json: bool) -> None:
    """The tokens of agency CODE (ids and state; never the tokens)."""
    agency = _agency(ctx, code)
    rows = [_token_row(t) for t in agency.tokens]
    text = "\n".join(
        f"{r['id']}  created {r['created_at']}  expires {r['expires_at'] or 'never'}"
        + ("  REVOKED" if r["revoked"] else "" if r["usable"] else "  EXPIRED")
        + (f"  {r['label']}" if r["label"] else "")
        for r in rows
    )
    emit(rows, as_json, text or f"{agency.code} has no token")


@token.command("revoke")
@click.argument("code")
@click.argument("token_id")
@json_option
@click.pass_context
def token_revoke(ctx: click.Context, code: str, token_id: str, as_json: bool) -> None:
    """Revoke a token at once (every instance refuses it within a second or so)."""
    agency = _change_one(ctx, code, lambda _d, a: creds.revoke_token(a, token_id))
    emit({"agency": agency.code, "id": token_id, "revoked": True}, as_json, f"revoked {token_id}")


@token.command("rotate")
@click.argument("code")
@click.argument("token_id")
@click.option(
    "--grace-hours",
    type=click.FloatRange(min=0),
    default=24,
    help="hours the old token keeps working, for the switch-over",
)
@expires_option
@json_option
@click.pass_context
def token_rotate(
    ctx: click.Context,
    code: str,
    token_id: str,
    grace_hours: float,
    expires_days: float,
    as_json: bool,
) -> None:
    """Make a new token for CODE; the old one expires after the grace period."""
    label = f"rotated from {token_id}"
    plaintext, tok = new_token(now_ms=now_ms(), expires_days=expires_days, label=label)
    until = now_ms() + int(grace_hours * 3600_000)

    def rotate(_d: Directory, a: Agency) -> Agency:
        return creds.add_token(creds.retire_token(a, token_id, until), tok)

    agency = _change_one(ctx, code, rotate)
    _secret_out(
        plaintext,
        {"agency": agency.code, "token": plaintext, "replaces": token_id, **_token_row(tok)},
        as_json,
        f"token {tok.id} for {agency.code}; {token_id} works until {_when(until)}; shown once:",
    )


# --------------------------------------------------------------------------- SDK systems


def _master_key(ctx: click.Context) -> bytes:
    settings = settings_of(ctx)
    path = settings.key_file(settings.auth.sdk_master_key_file, SDK_MASTER_KEY)
    if not path.exists():
        raise ConfigError(f"no SDK master key at {path}; run docbroker keys init")
    return parse_sdk_master_key(read_private(path, "the SDK master key").decode())


@agencies.group("system")
def system() -> None:
    """SDK systems of an agency: system id + shared secret, for the national-axis surface."""


def _system_flags(sys_: Any) -> dict[str, Any]:
    return {
        "plain_http": sys_.plain_http,
        "networks": list(sys_.networks),
        "manage_agencies": sys_.manage_agencies,
    }


def _system_out(agency: Agency, sys_: Any, secret: str, as_json: bool, verb: str) -> None:
    data = {
        "agency": agency.code,
        "systemid": sys_.system_id,
        "secret": secret,
        "expires_at": _when(sys_.expires_at_ms),
        **_system_flags(sys_),
    }
    _secret_out(
        secret,
        data,
        as_json,
        f"{verb} SDK system {sys_.system_id} for {agency.code}; "
        f"expires {_when(sys_.expires_at_ms) or 'never'}; {_transport_text(sys_)}; "
        "its secret, shown once:",
    )


def _transport_text(sys_: Any) -> str:
    where = f" from {', '.join(sys_.networks)}" if sys_.networks else ""
    if sys_.plain_http:
        return f"HTTPS or plain HTTP{where}"
    return f"HTTPS only{where}"


def _networks(values: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--network") from None
    return tuple(out)


def _checked_transport(plain_http: bool, networks: tuple[str, ...]) -> None:
    if plain_http and not networks:
        raise click.UsageError(
            "--plain-http needs at least one --network: over plain HTTP a captured request "
            "can be replayed, so the system's own networks must be the only way in"
        )


_NETWORK_HELP = (
    "a source network (CIDR) the system may call from (repeatable); with --plain-http "
    "at least one is required"
)


@system.command("create")
@click.argument("code")
@click.option("--system-id", help="the XroadVnpt-systemid (default: the agency's QCVN 102 code)")
@expires_option
@click.option(
    "--plain-http",
    is_flag=True,
    help="also serve this system over plain HTTP (only from its --network): the unchanged "
    "SDK signs no nonce and a timestamp fixed for days, so on plain HTTP anyone who "
    "sees a request can replay it",
)
@click.option("--network", "networks", multiple=True, help=_NETWORK_HELP)
@click.option(
    "--manage-agencies",
    is_flag=True,
    help="may register and delete its own sub-agencies (registerAgency, deleteAgency)",
)
@json_option
@click.pass_context
def system_create(
    ctx: click.Context,
    code: str,
    system_id: str | None,
    expires_days: float,
    plain_http: bool,
    networks: tuple[str, ...],
    manage_agencies: bool,
    as_json: bool,
) -> None:
    """Register an SDK system for agency CODE and print its secret."""
    key = _master_key(ctx)
    nets = _networks(networks)
    _checked_transport(plain_http, nets)
    made: list[Any] = []

    def add(d: Directory, a: Agency) -> Agency:
        made.append(
            new_system(
                system_id or a.code102 or a.code,
                now_ms=now_ms(),
                expires_days=expires_days,
                plain_http=plain_http,
                networks=nets,
                manage_agencies=manage_agencies,
            )
        )
        return creds.add_system(d, a, made[0])

    agency = _change_one(ctx, code, add)
    _system_out(agency, made[0], derive_secret(key, made[0]), as_json, "registered")


@system.command("set")
@click.argument("code")
@click.argument("system_id")
@click.option("--plain-http/--https-only", "plain_http", default=None, help="see create")
@click.option("--network", "networks", multiple=True, help=_NETWORK_HELP + " (replaces the list)")
@click.option("--any-network", is_flag=True, help="drop the network restriction (HTTPS only)")
@click.option("--manage-agencies/--no-manage-agencies", default=None, help="see create")
@json_option
@click.pass_context
def system_set(
    ctx: click.Context,
    code: str,
    system_id: str,
    plain_http: bool | None,
    networks: tuple[str, ...],
    any_network: bool,
    manage_agencies: bool | None,
    as_json: bool,
) -> None:
    """Change how SDK system SYSTEM_ID of agency CODE may call (its secret stays)."""
    nets = _networks(networks)
    made: list[Any] = []

    def change(_d: Directory, a: Agency) -> Agency:
        old = next((s for s in a.systems if s.system_id == system_id), None)
        if old is None:
            raise NotFound(f"{a.code} has no SDK system {system_id}")
        new = dataclasses.replace(
            old,
            plain_http=old.plain_http if plain_http is None else plain_http,
            networks=() if any_network else (nets or old.networks),
            manage_agencies=old.manage_agencies if manage_agencies is None else manage_agencies,
        )
        _checked_transport(new.plain_http, new.networks)
        made.append(new)
        return creds.replace_system(a, new)

    agency = _change_one(ctx, code, change)
    sys_ = made[0]
    emit(
        {"agency": agency.code, "systemid": sys_.system_id, **_system_flags(sys_)},
        as_json,
        f"SDK system {sys_.system_id} of {agency.code}: {_transport_text(sys_)}"
        + ("; manages its sub-agencies" if sys_.manage_agencies else ""),
    )


@system.command("rotate")
@click.argument("code")
@click.argument("system_id")
@expires_option
@json_option
@click.pass_context
def system_rotate(
    ctx: click.Context, code: str, system_id: str, expires_days: float, as_json: bool
) -> None:
    """Give a system a new secret; the old one stops working at once."""
    key = _master_key(ctx)
    fresh = new_system(system_id, now_ms=now_ms(), expires_days=expires_days)
    made: list[Any] = []

    def rotate(_d: Directory, a: Agency) -> Agency:
        old = next((s for s in a.systems if s.system_id == system_id), None)
        flags = _system_flags(old) if old else {}
        flags["networks"] = tuple(flags.get("networks", ()))
        made.append(dataclasses.replace(fresh, **flags))
        return creds.replace_system(a, made[0])

    agency = _change_one(ctx, code, rotate)
    _system_out(agency, made[0], derive_secret(key, made[0]), as_json, "rotated")


@system.command("list")
@click.argument("code")
@json_option
@click.pass_context
def system_list(ctx: click.Context, code: str, as_json: bool) -> None:
    """The SDK systems of agency CODE."""
    agency = _agency(ctx, code)
    rows = [
        {
            "systemid": s.system_id,
            "created_at": _when(s.created_at_ms),
            "expires_at": _when(s.expires_at_ms),
            "revoked": s.revoked,
            **_system_flags(s),
            "transport": _transport_text(s),
        }
        for s in agency.systems
    ]
    text = "\n".join(
        f"{r['systemid']}  created {r['created_at']}  expires {r['expires_at'] or 'never'}"
        f"  {r['transport']}"
        + ("  manages sub-agencies" if r["manage_agencies"] else "")
        + ("  REVOKED" if r["revoked"] else "")
        for r in rows
    )
    emit(rows, as_json, text or f"{agency.code} has no SDK system")


@system.command("revoke")
@click.argument("code")
@click.argument("system_id")
@json_option
@click.pass_context
def system_revoke(ctx: click.Context, code: str, system_id: str, as_json: bool) -> None:
    """Revoke an SDK system: its requests are refused."""
    agency = _change_one(ctx, code, lambda _d, a: creds.revoke_system(a, system_id))
    emit(
        {"agency": agency.code, "systemid": system_id, "revoked": True},
        as_json,
        f"revoked {system_id}",
    )


# --------------------------------------------------------------------------- admin tokens


@keys.command("admin-token")
@click.option("--label", default="", help="who or what the token is for")
@json_option
@click.pass_context
def keys_admin_token(ctx: click.Context, label: str, as_json: bool) -> None:
    """Make an admin token (its hash goes to auth.admin_tokens_file); shown once.

    Remove its line from the file to revoke it; running instances notice."""
    settings = settings_of(ctx)
    path = settings.key_file(settings.auth.admin_tokens_file, ADMIN_TOKENS)
    plaintext = new_admin_token(path, label)
    _secret_out(
        plaintext,
        {"token": plaintext, "file": str(path)},
        as_json,
        f"admin token (hash added to {path}); shown once:",
    )
