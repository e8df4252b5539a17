"""Serving the app: TLS (with optional client certificates) and a connection cap.

Slow or idle clients cannot hold the server: a connection that has not sent a
complete request within `http.idle_timeout` is closed (aiohttp's keep-alive
timer runs from the connection's start and covers half-sent headers), a body
must arrive within `http.request_timeout` (the handlers read it under a
timeout), and beyond `http.max_connections` open connections a new one is
answered 503 and closed at once instead of queueing.
"""

from __future__ import annotations

import asyncio
import ssl

import structlog
from aiohttp import web

from broker.config import Settings
from broker.core.errors import ConfigError

log = structlog.get_logger(__name__)

BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 33\r\nConnection: close\r\n\r\ntoo many connections; retry later\n"
)


def server_tls_context(settings: Settings) -> ssl.SSLContext:
    """The HTTPS context: the server's certificate, and client certificates asked for
    (optional: a token also authenticates) and checked against the trusted CAs."""
    cert = settings.key_file(settings.http.tls_certificate, "tls.cert.pem")
    key = settings.key_file(settings.http.tls_private_key, "tls.key.pem")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the TLS certificate {cert} and key {key}: {exc}; "
            "set http.tls_certificate and http.tls_private_key, or run docbroker keys init"
        ) from None
    for ca in settings.trusted_ca_files:
        try:
            context.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the CA file {ca} for client certificates: {exc}"
            ) from None
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


class _Busy(asyncio.Protocol):
    """Answers 503 and hangs up: the connection cap is reached."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(BUSY)
        transport.close()


class CappedSite(web.BaseSite):
    """A TCP site that accepts at most `max_connections` connections at once."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self.max_connections = max_connections
        self.refused = 0

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None

        def protocol() -> asyncio.BaseProtocol:
            if len(server.connections) >= self.max_connections:
                self.refused += 1
                if self.refused == 1 or self.refused % 1000 == 0:
                    log.warning("connection cap reached", cap=self.max_connections)
                return _Busy()
            return server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            protocol, self._host, self._port, ssl=self._ssl_context, reuse_address=True
        )


def runner_options(settings: Settings) -> dict[str, object]:
    """What the AppRunner passes to each connection's handler."""
    return {"keepalive_timeout": settings.http.idle_timeout}
