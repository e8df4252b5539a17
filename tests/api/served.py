"""The daemon's own server (CappedSite, the runner options) in-process on a real
socket, with settings from the environment given: for the tests of the limits."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters.http_api import build_app
from adapters.http_api.server import CappedSite, bind_listener, runner_options
from broker.config import load_settings
from broker.runtime import Runtime
from tests.conftest import backend_env
from tests.pki import install_keys


class Served:
    def __init__(self, runtime: Runtime, app: web.Application, site: CappedSite) -> None:
        self.runtime, self.app, self.site, self.port = runtime, app, site, site.port
        self.url = f"http://127.0.0.1:{site.port}"


@contextlib.asynccontextmanager
async def serve(
    tmp_path: Path, unique_prefix: str, env: Mapping[str, str], **runner: Any
) -> AsyncIterator[Served]:
    """The embedded backend's daemon app with `env` over the test defaults; `runner`
    adds AppRunner options to the daemon's own."""
    install_keys(tmp_path / "data")
    settings = load_settings(
        None, {**backend_env("embedded", tmp_path / "data", unique_prefix, None), **env}
    )
    runtime = Runtime.build(settings)
    app = build_app(runtime)
    runner_ = web.AppRunner(app, **runner_options(settings), **runner)  # type: ignore[arg-type]
    await runner_.setup()
    site = CappedSite(
        runner_,
        bind_listener("127.0.0.1", 0),
        max_connections=settings.http.max_connections,
    )
    await site.start()
    try:
        yield Served(runtime, app, site)
    finally:
        await runner_.cleanup()
