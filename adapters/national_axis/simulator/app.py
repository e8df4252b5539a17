"""The simulator as an aiohttp application, and the command that serves it."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable

import structlog
from aiohttp import web

from adapters.national_axis.simulator.config import (
    SimulatorConfig,
    SimulatorConfigError,
    load_simulator_config,
)
from adapters.national_axis.simulator.handlers import (
    SIMULATOR,
    clear_faults,
    get_faults,
    get_state,
    handle_operation,
    healthz,
    set_faults,
)
from adapters.national_axis.simulator.state import Simulator
from broker.config import LoggingSettings
from broker.logsetup import configure_logging

log = structlog.get_logger(__name__)

MAX_REQUEST_BYTES = 64 * 1024 * 1024  # aiohttp's default (1 MiB) is below real packages


def build_simulator_app(config: SimulatorConfig) -> web.Application:
    """The simulator as an aiohttp application; its store closes with the app."""
    sim = Simulator.build(config)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[SIMULATOR] = sim

    async def close_store(_: web.Application) -> None:
        sim.store.close()

    app.on_cleanup.append(close_store)
    app.router.add_get("/_sim/healthz", healthz)
    app.router.add_get("/_sim/state", get_state)
    app.router.add_get("/_sim/faults", get_faults)
    app.router.add_post("/_sim/faults", set_faults)
    app.router.add_delete("/_sim/faults", clear_faults)
    # every method reaches the handler, which answers a wrong one in the SDK's form
    app.router.add_route("*", "/{operation}", handle_operation)
    return app


async def serve_simulator(
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8090,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve until cancelled or SIGTERM/SIGINT; port 0 picks a free port, which
    `ready` receives once the simulator accepts connections."""
    runner = web.AppRunner(build_simulator_app(config), handle_signals=False, access_log=None)
    stop = asyncio.Event()
    signals = _on_signals(stop)
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        actual = runner.addresses[0][1] if runner.addresses else port
        url = f"http://{host}:{actual}"
        log.info(
            f"axis simulator listening on {url}",
            url=url,
            systems=[s.id for s in config.systems],
            state_file=str(config.state_file) if config.state_file else None,
        )
        if ready is not None:
            ready(actual)
        await stop.wait()
        log.info("axis simulator stopping")
    finally:
        await runner.cleanup()
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.remove_signal_handler(sig)
    log.info("axis simulator stopped")


def _on_signals(stop: asyncio.Event) -> list[signal.Signals]:
    """Stop on SIGTERM/SIGINT where the loop can handle signals (the main thread)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(sig)
    return installed


def main(argv: list[str] | None = None) -> int:
    """`python -m adapters.national_axis.simulator --config FILE [--host H] [--port N]`."""
    parser = argparse.ArgumentParser(
        prog="python -m adapters.national_axis.simulator",
        description="A simulator of the national document axis (VDXP), for tests and demos.",
    )
    parser.add_argument("--config", required=True, help="the simulator's TOML file")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (keep it local)")
    parser.add_argument("--port", type=int, default=8090, help="listen port; 0 = any free one")
    args = parser.parse_args(argv)
    try:
        config = load_simulator_config(args.config)
    except SimulatorConfigError as exc:
        print(f"axis simulator: {exc}", file=sys.stderr)
        return 2
    configure_logging(LoggingSettings())
    asyncio.run(serve_simulator(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
