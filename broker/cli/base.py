"""The `docbroker` command (also `python -m broker`).

Exit status: 0 success, 1 the input was refused (invalid, not authorised,
not found), 2 usage or environment error. Errors name a stable problem code.
`--json` makes every command that prints results print JSON, errors included.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from broker import __version__
from broker.config import Settings, load_settings
from broker.core.errors import DocbrokerError

if TYPE_CHECKING:
    pass

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


@cli.group()
def keys() -> None:
    """Development keys, and what the configured keys and CAs are."""


@cli.group()
def agencies() -> None:
    """The agency directory: list, show, add, update, suspend, import, export."""


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
    from broker.keys.secrets import read_secret
    from broker.log import open_log
    from broker.log.topics import topic_specs

    settings = one_off_instance(settings_of(ctx))
    topics = Topics.with_prefix(settings.backend.topic_prefix)

    async def main() -> Any:
        durable = open_log(settings, read_secret)
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


def main() -> None:
    cli(prog_name="docbroker")
