"""Who is calling, what they may do, and how often: the HTTP side of broker.directory.auth.

Every /v1 request must carry a credential: `Authorization: Bearer <token>` (an
agency's API token, or an admin token), or a client certificate on an HTTPS
connection that binds to an agency. The SDK surface (/vdxp) authenticates by
HMAC-signed headers instead (`Access.sdk_caller`). The operations endpoints
(/healthz, /readyz, /metrics, /openapi.yaml) are open.

Authorisation is by principal: an agency acts only on its own mailbox and only
sends as itself; an administrator may read any mailbox and document but not
act for an agency (it cannot send, fetch as delivered, or acknowledge).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from aiohttp import web
from cryptography import x509
from structlog.contextvars import bound_contextvars

from adapters.http_api.client_certs import ChainVerdicts
from adapters.http_api.keys import RUNTIME
from adapters.http_api.ratelimit import RateLimiter
from broker.clock import now_ms, utc_now
from broker.core.errors import AccessRefused, BackendUnavailable, RateLimited
from broker.directory.auth import (
    NonceCache,
    Principal,
    Refusal,
    SdkCall,
    SdkRequest,
    agency_for_certificate,
    check_admin_token,
    check_sdk_request,
    check_token,
)
from broker.keys.files import (
    ADMIN_TOKENS,
    SDK_MASTER_KEY,
    CachedFile,
    parse_admin_hashes,
    parse_sdk_master_key,
)
from broker.runtime import Runtime
from broker.trust.certs import fingerprint, subject_text, subject_uid
from broker.trust.store import ChainResult

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
A = TypeVar("A", Principal, SdkCall)

PRINCIPAL = web.RequestKey("principal", Principal)
GUARDED_PREFIX = "/v1/"
BEARER_CHALLENGE = 'Bearer realm="docbroker"'
PLAIN_HTTP_CHECK_SECONDS = 10.0


@dataclass
class Access:
    """The credentials docbroker accepts, read from the directory and the keys folder."""

    runtime: Runtime
    admin_hashes: CachedFile[frozenset[str]]
    sdk_master_key: CachedFile[bytes | None]
    nonces: NonceCache
    limiter: RateLimiter
    chains: ChainVerdicts
    _catching: asyncio.Future[bool] | None = None

    @classmethod
    def from_runtime(cls, runtime: Runtime) -> Access:
        s = runtime.settings
        access = cls(
            runtime,
            CachedFile(
                s.key_file(s.auth.admin_tokens_file, ADMIN_TOKENS),
                parse_admin_hashes,
                frozenset(),
                private="the admin tokens file",
            ),
            CachedFile(
                s.key_file(s.auth.sdk_master_key_file, SDK_MASTER_KEY),
                parse_sdk_master_key,
                None,
                private="the SDK master key",
            ),
            NonceCache(window_ms=int(s.auth.replay_window * 1000)),
            RateLimiter(s.http.rate_limit, s.http.rate_burst),
            ChainVerdicts(runtime.trust.store, utc_now),
        )
        # Read once now: a secret file others may read stops the start (ConfigError).
        access.admin_hashes.get()
        access.sdk_master_key.get()
        return access

    async def caller(self, request: web.Request) -> Principal:
        """The principal of a /v1 request, or AccessRefused (401/403)."""
        presented = None
        if not request.headers.get("Authorization"):  # a token, if any, is what counts
            presented = await self._client_certificate(request)
        return await self._fresh_if_needed(lambda: self._caller(request, presented))

    async def _client_certificate(
        self, request: web.Request
    ) -> tuple[x509.Certificate, ChainResult] | None:
        """The connection's client certificate and its chain's verdict (checked off the
        event loop, remembered a while: ChainVerdicts), if it presented one."""
        der = peer_certificate_der(request)
        if der is None:
            return None
        cert = x509.load_der_x509_certificate(der)
        return cert, await self.chains.check(der, cert)

    async def sdk_caller(self, request: web.Request) -> SdkCall:
        """The system behind an HMAC-signed SDK request and what it signed, or
        AccessRefused."""
        call = await self._fresh_if_needed(lambda: self._sdk_caller(request))
        nonce = call.params.get("nonce")
        if nonce is not None:
            await self._shared_nonce(call.system.system_id, nonce)
        return call

    async def _shared_nonce(self, system_id: str, nonce: str) -> None:
        """A signed nonce is refused when any instance saw it within the window: each
        instance's own cache catches a replay to it at once, the dedup topic one to
        another instance (after the time it takes to follow it)."""
        dedup = self.runtime.dedup
        now = now_ms()
        if dedup.nonce_seen(system_id, nonce, now - self.nonces.window_ms):
            raise AccessRefused.because(
                "replayed-request", "this request was already received (nonce reused)"
            )
        await self.runtime.log.append([dedup.nonce_record(system_id, nonce, now)])

    async def _fresh_if_needed(self, check: Callable[[], A | Refusal]) -> A:
        """A credential made or rotated a moment ago may not be in this instance's copy
        of the directory yet: catch up with the directory once, then ask again."""
        result = check()
        if isinstance(result, Refusal) and result.maybe_newer and await self._catch_up():
            result = check()
        return _accepted(result)

    async def _catch_up(self) -> bool:
        """Read the directory to its end; requests that arrive while a read is under way
        share it, so a burst of unknown credentials costs one log query, not one each."""
        if self._catching is None or self._catching.done():
            self._catching = asyncio.ensure_future(self._read_directory())
        return await asyncio.shield(self._catching)

    async def _read_directory(self) -> bool:
        try:
            await self.runtime.directory.follower.caught_up(timeout=2.0)
        except BackendUnavailable:
            return False
        return True

    def _caller(
        self, request: web.Request, presented: tuple[x509.Certificate, ChainResult] | None
    ) -> Principal | Refusal:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AccessRefused.because("unauthenticated", "use Authorization: Bearer <token>")
            return self._bearer(token.strip())
        if presented is not None:
            return self._certificate(*presented)
        raise AccessRefused.because(
            "unauthenticated",
            "this request needs a credential: Authorization: Bearer <token>, "
            "or a client certificate over HTTPS",
        )

    def _bearer(self, token: str) -> Principal | Refusal:
        admin = check_admin_token(token, self.admin_hashes.get())
        if admin is not None:
            return admin
        return check_token(token, self.runtime.directory.current, now_ms=now_ms())

    def _certificate(self, cert: x509.Certificate, checked: ChainResult) -> Principal | Refusal:
        if not checked.ok:
            raise AccessRefused.because(
                "unauthenticated", f"client certificate {subject_text(cert)}: {checked.reason}"
            )
        return agency_for_certificate(
            self.runtime.directory.current,
            fingerprint(cert),
            subject_uid(cert),
            self.runtime.settings.trust.bind_by_subject_uid,
        )

    def _sdk_caller(self, request: web.Request) -> SdkCall | Refusal:
        key = self.sdk_master_key.get()
        if key is None:
            raise BackendUnavailable(
                "the SDK surface has no master key (auth.sdk_master_key_file); "
                "run docbroker keys init"
            )
        every: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            every.setdefault(name.lower(), []).append(value)
        return check_sdk_request(
            SdkRequest(request.headers, every, request.secure, request.remote),
            self.runtime.directory.current,
            key,
            self.nonces,
            now_ms=now_ms(),
        )

    def limit(self, principal: Principal) -> None:
        wait = self.limiter.take(principal.name)
        if wait > 0:
            self.runtime.metrics.http_limited("rate")
            raise RateLimited(
                f"{principal.name} exceeds {self.limiter.rate:g} requests per second", wait
            )


ACCESS = web.AppKey("access", Access)


def _accepted(result: A | Refusal) -> A:
    if isinstance(result, Refusal):
        raise AccessRefused.because(result.code, result.message)
    return result


def peer_certificate_der(request: web.Request) -> bytes | None:
    """The client certificate of an HTTPS connection, DER (already chain-checked by TLS
    against the CA files; docbroker checks it against its trust store, CRLs included)."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if not isinstance(ssl_object, ssl.SSLObject):
        return None
    return ssl_object.getpeercert(binary_form=True) or None


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate and rate-limit every /v1 request; the principal rides on the request."""
    if not request.path.startswith(GUARDED_PREFIX):
        return await handler(request)
    access = request.app[ACCESS]
    principal = await access.caller(request)
    access.limit(principal)
    request[PRINCIPAL] = principal
    with bound_contextvars(caller=principal.name, auth=str(principal.method)):
        return await handler(request)


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def require_agency(request: web.Request, code: str, *, admin_may_read: bool = False) -> Principal:
    """The caller, when it is agency `code` (or an administrator reading)."""
    principal = principal_of(request)
    if principal.is_agency(code) or (admin_may_read and principal.admin):
        return principal
    if principal.admin:
        raise AccessRefused.because(
            "forbidden", "an admin credential may read but not act for an agency"
        )
    raise AccessRefused.because("forbidden", f"{principal.name} may not act for {code}")


def plain_http_systems(runtime: Runtime) -> list[str]:
    """`system id (agency) from networks` of every SDK system allowed plain HTTP."""
    return [
        f"{s.system_id} ({a.code}) from {', '.join(s.networks) or 'nowhere'}"
        for a in runtime.directory.current
        for s in a.systems
        if s.plain_http and not s.revoked
    ]


async def watch_plain_http(app: web.Application) -> AsyncIterator[None]:
    """Say at start, and whenever it changes, which SDK systems an administrator allowed
    to use plain HTTP (a warning in the log, and the docbroker_sdk_plain_http_systems
    gauge): on plain HTTP their requests can be read and replayed by anyone on the path."""
    runtime = app[RUNTIME]

    async def watch() -> None:
        seen: list[str] | None = None
        while True:
            current = plain_http_systems(runtime)
            runtime.metrics.sdk_plain_http_systems(len(current))
            if current != seen:
                if current:
                    log.warning(
                        "SDK systems allowed over plain HTTP: their requests can be read and "
                        "replayed on the path (restricted to their networks)",
                        systems=current,
                    )
                elif seen:
                    log.info("no SDK system is allowed over plain HTTP any more")
                seen = current
            await asyncio.sleep(PLAIN_HTTP_CHECK_SECONDS)

    task = asyncio.create_task(watch(), name="plain-http-watch")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
