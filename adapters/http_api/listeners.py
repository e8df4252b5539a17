"""Which addresses docbroker listens on, over what, and whether it may: secure by default.

Agencies send bearer tokens and whole documents, and SDK systems requests that anyone
who saw them can replay: on a network, that is HTTPS. So the API's listener
(`http.host`) serves plain HTTP only on loopback (127.0.0.0/8, ::1, localhost: the
development setup, or a TLS-terminating proxy on the same machine), unless the
configuration says plainly that it wants plain HTTP beyond (`http.allow_plain`);
otherwise docbroker refuses to start, before it binds anything. An empty host, 0.0.0.0
and :: are every address: not loopback.

The second listener (`http.sdk_plain_host`, none by default) serves plain HTTP on
purpose: the SDK surface only, to the SDK systems an administrator allowed plain HTTP
from given networks (systems built on the unchanged SDK that cannot be given a CA).
Every listener that serves plain HTTP because the configuration said so is named in a
warning at start and in the docbroker_http_plain_listener gauge.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address

import structlog

from broker.config import Settings
from broker.core.errors import ConfigError
from broker.metrics import Metrics

log = structlog.get_logger(__name__)

API, SDK = "api", "sdk"


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:  # "" (every address), or a name that may resolve anywhere
        return False


def address(host: str, port: int) -> str:
    """`host:port`, `[v6]:port`; an empty host is every address (`*`)."""
    host = host or "*"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Listener:
    """One listening address: the API's (`api`) or the plain SDK listener (`sdk`)."""

    name: str
    host: str
    port: int
    tls: bool
    setting: str  # the setting that names its host, for error messages

    @property
    def where(self) -> str:
        return address(self.host, self.port)

    @property
    def plain_on_purpose(self) -> bool:
        """Serves plain HTTP beyond loopback (allowed explicitly), or is the plain SDK
        listener (configured explicitly)."""
        return self.name == SDK or (not self.tls and not is_loopback(self.host))


def listeners(settings: Settings) -> list[Listener]:
    """The listeners the configuration asks for, the API's first; ConfigError (one
    line, naming the fix) when the API's would serve plain HTTP beyond loopback without
    `http.allow_plain`."""
    http = settings.http
    api = Listener(API, http.host, http.port, http.tls, "http.host")
    if not api.tls and not is_loopback(api.host) and not http.allow_plain:
        raise ConfigError(
            f"refusing to serve plain HTTP on {api.where}, which is not a loopback "
            "address: set http.tls = true with a certificate (http.tls_certificate, "
            "http.tls_private_key), or http.allow_plain = true to accept plain HTTP"
        )
    found = [api]
    if http.sdk_plain_host:
        found.append(
            Listener(SDK, http.sdk_plain_host, http.sdk_plain_port, False, "http.sdk_plain_host")
        )
    return found


def announce(listener: Listener, url: str, metrics: Metrics) -> None:
    """The warning and the gauge of a listener that serves plain HTTP on purpose."""
    metrics.http_plain_listener(listener.name, listener.plain_on_purpose)
    if not listener.plain_on_purpose:
        return
    if listener.name == SDK:
        log.warning(
            "plain-HTTP SDK listener (http.sdk_plain_host): it serves /vdxp only, to the "
            "SDK systems allowed plain HTTP from their networks; anyone on the path can "
            "read and replay their requests",
            url=url,
        )
    else:
        log.warning(
            "serving plain HTTP beyond loopback (http.allow_plain): API tokens, SDK "
            "requests and documents cross the network in clear; set http.tls = true",
            url=url,
        )
