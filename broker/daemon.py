"""`docbroker serve`: the long-running daemon.

The composition root: it binds the HTTP addresses (the API's, and the plain SDK
listener's when configured), builds the runtime, mounts the HTTP adapter and serves
until SIGTERM or SIGINT. Plain HTTP beyond loopback without http.allow_plain, a TLS
certificate that cannot be loaded, or an address that cannot be bound (in use, not
allowed) ends the start at once, before the log, the views or the worker processes
start: ConfigError, exit status 2. Shutdown order: stop
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
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import structlog
from aiohttp import web

from adapters.http_api import build_app
from adapters.http_api.listeners import API, Listener, announce, listeners
from adapters.http_api.sdk_listener import plain_sdk_app
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
        plan = listeners(settings)  # plain HTTP beyond loopback unasked for: refused here
        tls = server_tls_context(settings) if settings.http.tls else None
        with contextlib.ExitStack() as bound:
            sockets = [
                bound.enter_context(_closing(bind_listener(each.host, each.port, each.setting)))
                for each in plan
            ]
            await _serve(settings, list(zip(plan, sockets, strict=True)), tls, stop, ready)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    return 0


Bound = Sequence[tuple[Listener, Sequence[socket.socket]]]


async def _serve(
    settings: Settings,
    bound: Bound,
    tls: ssl.SSLContext | None,
    stop: asyncio.Event,
    ready: asyncio.Event | None,
) -> None:
    runtime = Runtime.build(settings)
    app = build_app(runtime)
    if settings.national_axis.enabled:
        app.cleanup_ctx.append(_national_axis(runtime))
    # the API's runner first: it starts the runtime, and stops it last
    runners = [
        _runner(app if each.name == API else plain_sdk_app(app), settings) for each, _ in bound
    ]
    try:
        for runner in runners:
            await runner.setup()  # the API's runs the start half: log, view, pipeline
        url = await _start_sites(settings, runtime, bound, runners, tls)
        if ready is not None:
            ready.set()
        announce = asyncio.create_task(_announce_ready(runtime, url, stop))
        await stop.wait()
        announce.cancel()
        notify("STOPPING=1", "STATUS=shutting down: finishing in-flight work")
        log.info("shutting down: finishing in-flight work")
    finally:
        for runner in runners:  # no listener takes a new connection from here on
            for site in list(runner.sites):
                await site.stop()
        for runner in reversed(runners):  # the SDK listener's requests end first
            await runner.cleanup()
    log.info("docbroker stopped", order=runtime.events)


def _runner(app: web.Application, settings: Settings) -> web.AppRunner:
    return web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.http.shutdown_timeout,
        **runner_options(settings),
    )


async def _start_sites(
    settings: Settings,
    runtime: Runtime,
    bound: Bound,
    runners: Sequence[web.AppRunner],
    tls: ssl.SSLContext | None,
) -> str:
    """Listen on every bound address; the API's URL."""
    urls = []
    for (listener, sockets), runner in zip(bound, runners, strict=True):
        site = CappedSite(
            runner,
            sockets,
            max_connections=settings.http.max_connections,
            ssl_context=tls if listener.tls else None,
        )
        await site.start()
        announce(listener, site.name, runtime.metrics)
        urls.append(site.name)
    log.info(
        "docbroker serving",
        version=__version__,
        backend=runtime.log.name,
        url=urls[0],
        **({"sdk_plain_url": urls[1]} if len(urls) > 1 else {}),
        instance=settings.instance_name,
    )
    return urls[0]


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
