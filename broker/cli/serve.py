"""`docbroker serve`, `axis-simulator`, `config check|show`: running the broker and its
configuration."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click

from broker.cli.base import (
    cli,
    emit,
    json_option,
    settings_of,
)
from broker.config import Settings, render_toml, to_mapping

if TYPE_CHECKING:
    pass


# --------------------------------------------------------------------- daemon


@cli.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the broker until SIGTERM or SIGINT."""
    try:
        from broker.daemon import serve as run
        from broker.logsetup import configure_logging

        settings = settings_of(ctx)
        configure_logging(settings.logging)
        status = asyncio.run(run(settings))
    except KeyboardInterrupt:  # before the daemon handles SIGINT itself, or after
        click.echo("docbroker: interrupted", err=True)
        status = 130
    ctx.exit(status)


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
    """Load the configuration and report the first wrong key or value (and a listener
    `serve` would refuse: plain HTTP beyond loopback without http.allow_plain)."""
    from adapters.http_api.listeners import listeners

    settings = settings_of(ctx)
    listeners(settings)
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
