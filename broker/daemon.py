"""`docbroker serve`: the long-running daemon.

The composition root: it binds the HTTP address, builds the runtime, mounts the
HTTP adapter and serves until SIGTERM or SIGINT. An address that cannot be bound
(in use, not allowed) ends the start at once, before the log, the views or the
worker processes start: ConfigError, exit status 2. Shutdown order: stop
accepting connections, release the long polls, let in-flight requests finish
(http.shutdown_timeout), then stop the pipeline after it committed the batch in
hand, the views, and the log. Exit status 0. Under systemd (`Type=notify`) it
says READY=1 once /readyz would pass, and STOPPING=1 when it starts to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import structlog
from aiohttp import web

from adapters.http_api import build_app
from adapters.http_api.server import (
    CappedSite,
    bind_listener,
    runner_options,
    server_tls_context,
)
from broker import __version__
from broker.config import Settings
from broker.runtime import Runtime
from broker.sdnotify import notify, notify_socket

log = structlog.get_logger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:  # first: a signal during the start stops it once started
        loop.add_signal_handler(sig, _on_signal, stop, sig)
    try:
        with _closing(bind_listener(settings.http.host, settings.http.port)) as sockets:
            await _serve(settings, sockets, stop, ready)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    return 0


async def _serve(
    settings: Settings,
    sockets: Sequence[socket.socket],
    stop: asyncio.Event,
    ready: asyncio.Event | None,
) -> None:
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
    try:
        await runner.setup()  # runs the cleanup contexts' start half: log, view, pipeline
        site = CappedSite(
            runner, sockets, max_connections=settings.http.max_connections, ssl_context=tls
        )
        await site.start()
        log.info(
            "docbroker serving",
            version=__version__,
            backend=runtime.log.name,
            url=site.name,
            instance=settings.instance_name,
        )
        if ready is not None:
            ready.set()
        announce = asyncio.create_task(_announce_ready(runtime, site.name, stop))
        await stop.wait()
        announce.cancel()
        notify("STOPPING=1", "STATUS=shutting down: finishing in-flight work")
        log.info("shutting down: finishing in-flight work")
    finally:
        await runner.cleanup()
    log.info("docbroker stopped", order=runtime.events)


async def _announce_ready(runtime: Runtime, url: str, stop: asyncio.Event) -> None:
    """READY=1 to systemd once every /readyz check passes (nothing outside systemd)."""
    if notify_socket() is None:
        return
    while not stop.is_set():
        checks = await runtime.readiness()
        failing = {k: v for k, v in checks.items() if not v.startswith("ok")}
        if not failing:
            notify("READY=1", f"STATUS=serving on {url}")
            return
        notify("STATUS=starting: " + "; ".join(f"{k}: {v}" for k, v in failing.items()))
        await asyncio.sleep(0.5)


@contextlib.contextmanager
def _closing(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


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
