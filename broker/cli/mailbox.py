"""`docbroker send|inbox|fetch|ack`: the reference client of the agency API."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from broker.cli.base import (
    F,
    cli,
    emit,
    json_option,
    settings_of,
)
from broker.cli.envelopes import problem_lines
from broker.core.errors import EXIT_OK

if TYPE_CHECKING:
    pass


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
    """Submit edXML files; print each message id (and the warnings of each).

    Each file goes with an Idempotency-Key made from its bytes, so sending it again
    (after a lost answer, or running the command twice) is answered with the first
    message id, by any instance; a 503 (the log is slow or down) is retried after its
    Retry-After, up to three times."""
    from broker.cli.client import ApiProblem

    client = client_of(ctx, url)
    results: list[dict[str, Any]] = []
    worst = EXIT_OK
    for path in files:
        try:
            answer = submit_idempotently(client, path.read_bytes())
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


SEND_RETRIES = 3


def submit_idempotently(client: Any, data: bytes) -> dict[str, Any]:
    """One file, its key the SHA-256 of its bytes; retried while the broker answers 503."""
    import time

    from broker.cli.client import ApiProblem

    key = "docbroker-send-" + hashlib.sha256(data).hexdigest()
    for attempt in range(SEND_RETRIES + 1):
        try:
            return client.submit(data, idempotency_key=key)  # type: ignore[no-any-return]
        except ApiProblem as exc:
            if exc.status != 503 or attempt == SEND_RETRIES:
                raise
            time.sleep(min(float(exc.retry_after or 1), 30))
    raise AssertionError("unreachable")
