"""Operations endpoints: /healthz, /readyz, /metrics, /openapi.yaml."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from adapters.http_api.keys import RUNTIME
from broker.metrics import CONTENT_TYPE


async def healthz(request: web.Request) -> web.StreamResponse:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Ready: the log answers, the mailbox view and the pipeline run."""
    checks = await request.app[RUNTIME].readiness()
    ready = all(v.startswith("ok") for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not-ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.StreamResponse:
    """The metrics, with readiness checked now: docbroker_ready is what a scrape
    reads, and nothing else may call /readyz (its checks are bounded in time)."""
    runtime = request.app[RUNTIME]
    await runtime.readiness()
    body = runtime.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def openapi_document() -> bytes:
    return (resources.files("broker.schemas") / "openapi.yaml").read_bytes()


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.Response(body=openapi_document(), content_type="application/yaml")
