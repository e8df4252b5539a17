"""Telling systemd how the daemon is doing (sd_notify), without a dependency.

Under a `Type=notify` unit systemd passes a unix datagram socket in
`NOTIFY_SOCKET`; a message is newline-separated `KEY=value` assignments
(`READY=1` once serving, `STOPPING=1` when shutting down, `STATUS=...` for
`systemctl status`). Outside systemd there is no socket and `notify` does
nothing. See sd_notify(3).
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger(__name__)


def notify_socket() -> str | None:
    """The address systemd gave, in the form `socket.connect` takes; None outside
    systemd (or for a vsock address, which docbroker does not speak)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):  # an abstract socket
        return "\0" + address[1:]
    return address if address.startswith("/") else None


def notify(*assignments: str) -> bool:
    """Send `KEY=value` assignments to systemd; False when there is nobody to tell.
    A failure is logged, never raised: the daemon runs on without it."""
    address = notify_socket()
    if address is None:
        return False
    message = "\n".join(assignments).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError as exc:
        log.warning("cannot notify systemd", socket=address, error=str(exc))
        return False
    return True
