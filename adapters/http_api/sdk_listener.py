"""The plain-HTTP SDK listener's application: the SDK surface (/vdxp) and nothing else.

Agency systems built on VNPT's unchanged SDK that cannot be given docbroker's CA may be
allowed plain HTTP by an administrator, one system at a time and from given networks
(`docbroker agencies system set CODE ID --plain-http --network CIDR`). The listener
of `http.sdk_plain_host` is where they call: it answers the SDK's operations exactly
as the main listener does (the same runtime, credentials, nonce cache, rate
limits and fair limits), and every other path 404 (problem+json), so the native API, the console,
/metrics and the rest are never served in clear. A request from a system not allowed
plain HTTP is refused as the SDK reads a refusal: 403, `insecure-transport`, with
the reason in ErrorDesc.
"""

from __future__ import annotations

from aiohttp import web

from adapters.http_api import sdk
from adapters.http_api.access import ACCESS
from adapters.http_api.app import observe
from adapters.http_api.keys import RUNTIME
from adapters.http_api.limits import ADMISSION
from broker.core.errors import NotFound


async def not_here(request: web.Request) -> web.StreamResponse:
    raise NotFound(
        f"{request.path} is not served on the plain-HTTP SDK listener, which serves the "
        "SDK surface (/vdxp/<operation>) only; the API is on the HTTPS listener"
    )


def plain_sdk_app(main: web.Application) -> web.Application:
    """An application sharing `main`'s runtime and access checks that routes /vdxp
    only (main's runner starts and stops the runtime: this one starts after it and
    stops before it)."""
    settings = main[RUNTIME].settings
    app = web.Application(
        middlewares=[observe],
        client_max_size=int(settings.limits.max_envelope_bytes) + 2,  # as build_app
    )
    app[RUNTIME] = main[RUNTIME]
    app[ACCESS] = main[ACCESS]
    app[ADMISSION] = main[ADMISSION]  # one agency's caps count on both listeners
    app.router.add_get("/vdxp/{operation}", sdk.operation)
    app.router.add_post("/vdxp/{operation}", sdk.operation)
    app.router.add_route("*", "/{path:.*}", not_here)
    return app
