"""Serving the app: the listening address, TLS (with optional or required client
certificates) and a connection cap.

The address is bound first, before anything else starts (`bind_listener`): a port in
use or not allowed is one line and exit status 2, with no log opened and no worker
process started. It listens once the app is set up (connections before that are
refused, not left waiting in the backlog).

Slow or idle clients cannot hold the server: a connection that has not sent a
complete request within `http.idle_timeout` is closed (aiohttp's keep-alive
timer runs from the connection's start and covers half-sent headers), a body
must arrive within `http.request_timeout` (the handlers read it under a
timeout), and beyond `http.max_connections` open connections a new one is
answered 503 and closed at once instead of queueing.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Sequence

import structlog
from aiohttp import web

from adapters.http_api.listeners import address
from broker.config import Settings
from broker.core.errors import ConfigError
from broker.keys.secrets import private_file

log = structlog.get_logger(__name__)

BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 33\r\nConnection: close\r\n\r\ntoo many connections; retry later\n"
)


# TLS 1.2: forward secrecy (ECDHE) and AEAD ciphers only: no CBC, no RSA key exchange,
# no SHA-1 MAC. TLS 1.3 keeps OpenSSL's suites (all of them AEAD with forward secrecy).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!PSK:!DSS"
CLIENT_CERTIFICATES = {"optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def server_tls_context(settings: Settings) -> ssl.SSLContext:
    """The HTTPS context: the server's certificate, TLS 1.2+ with modern ciphers only,
    and client certificates checked against the trusted CAs: asked for (optional: a
    token also authenticates) or demanded by the handshake (`required`)."""
    cert = settings.key_file(settings.http.tls_certificate, "tls.cert.pem")
    key = settings.key_file(settings.http.tls_private_key, "tls.key.pem")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if key.exists():
        private_file(key, "the HTTPS private key")
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_COMPRESSION
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
    context.verify_mode = CLIENT_CERTIFICATES[settings.http.client_certificates]
    return context


class _Busy(asyncio.Protocol):
    """Answers 503 and hangs up: the connection cap is reached."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(BUSY)
        transport.close()


def bind_listener(host: str, port: int, setting: str = "http.host") -> list[socket.socket]:
    """Sockets bound to every address `host` names (as asyncio's create_server binds
    them), not yet listening; ConfigError when one cannot be bound."""
    where = address(host, port)
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {where}: {exc.strerror} ({setting})") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, sockaddr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            # a restart binds the port while the last run's connections are in TIME_WAIT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise cannot_listen(where, exc) from None
    return sockets


def cannot_listen(where: str, exc: OSError) -> ConfigError:
    """One line: where, and why (`address already in use`, `permission denied`...)."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return ConfigError(f"cannot listen on {where}: {reason[:1].lower()}{reason[1:]}")


class CappedSite(web.BaseSite):
    """A TCP site on bound sockets that accepts at most `max_connections` connections
    at once."""

    def __init__(
        self,
        runner: web.BaseRunner,
        sockets: Sequence[socket.socket],
        *,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._sockets = list(sockets)
        self._servers: list[asyncio.AbstractServer] = []
        self.max_connections = max_connections
        self.refused = 0

    @property
    def port(self) -> int:
        """The port bound (the one picked when http.port is 0)."""
        return int(self._sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        host, port = self._sockets[0].getsockname()[:2]
        return address(host, port)

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self.address}"

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
        for sock in self._sockets:
            try:
                self._servers.append(
                    await loop.create_server(protocol, sock=sock, ssl=self._ssl_context)
                )
            except OSError as exc:  # another process bound it too and listened first
                raise cannot_listen(self.address, exc) from None
        self._server = self._servers[0]

    async def stop(self) -> None:
        for each in self._servers:  # the first is also BaseSite's own _server
            each.close()
        await super().stop()


def runner_options(settings: Settings) -> dict[str, object]:
    """What the AppRunner passes to each connection's handler."""
    return {"keepalive_timeout": settings.http.idle_timeout}
