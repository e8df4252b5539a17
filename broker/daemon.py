"""`docbroker serve`: the long-running daemon.

The composition root: it builds the runtime, mounts the HTTP adapter and serves
until SIGTERM or SIGINT. Shutdown order: stop accepting connections, let
in-flight requests finish (http.shutdown_timeout), then stop the pipeline after
it committed the batch in hand, the mailbox view, and the log. Exit status 0.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from adapters.http_api import build_app
from adapters.http_api.server import CappedSite, runner_options, server_tls_context
from broker import __version__
from broker.config import Settings
from broker.runtime import Runtime

log = structlog.get_logger(__name__)


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    runtime = Runtime.build(settings)
    app = build_app(runtime)
    if settings.national_axis.enabled:
        app.cleanup_ctx.append(_national_axis(runtime))
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.http.shutdown_timeout,
        **runner_options(settings),
    )
    tls = server_tls_context(settings) if settings.http.tls else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)
    try:
        await runner.setup()  # runs the cleanup contexts' start half: log, view, pipeline
        site = CappedSite(
            runner,
            settings.http.host,
            settings.http.port,
            max_connections=settings.http.max_connections,
            ssl_context=tls,
        )
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else settings.http.port
        log.info(
            "docbroker serving",
            version=__version__,
            backend=runtime.log.name,
            url=f"{'https' if tls else 'http'}://{settings.http.host}:{port}",
            instance=settings.instance_name,
        )
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("shutting down: finishing in-flight work")
    finally:
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("docbroker stopped", order=runtime.events)
    return 0


def _national_axis(runtime: Runtime) -> Callable[[web.Application], AsyncIterator[None]]:
    """The link to the national axis: started after the runtime, stopped before it."""
    from adapters.national_axis.link import axis_link

    async def national_axis(app: web.Application) -> AsyncIterator[None]:
        async with axis_link(runtime):
            yield

    return national_axis


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("signal received", signal=sig.name)
    stop.set()
