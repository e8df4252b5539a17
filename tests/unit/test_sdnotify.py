"""sd_notify without a dependency: the messages a Type=notify unit's systemd reads."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from broker.sdnotify import notify, notify_socket


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket standing for systemd's, named in NOTIFY_SOCKET."""
    with (
        tempfile.TemporaryDirectory(prefix="notify") as short,  # sun_path: 108 bytes
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
    ):
        sock.bind(f"{short}/notify.sock")
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", f"{short}/notify.sock")
        yield sock


class TestNotify:
    def test_assignments_arrive_as_one_datagram(self, listener: socket.socket) -> None:
        """The assignments of one call travel together, one per line."""
        assert notify("READY=1", "STATUS=serving")
        assert listener.recv(4096) == b"READY=1\nSTATUS=serving"

    def test_outside_systemd_nothing_is_sent(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """No NOTIFY_SOCKET (a terminal, a container): notify does nothing."""
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
        assert notify_socket() is None
        assert notify("READY=1") is False

    def test_an_abstract_socket_is_addressed_with_a_nul(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """systemd names abstract sockets with a leading @; vsock addresses are not
        spoken (nothing is sent)."""
        monkeypatch.setenv("NOTIFY_SOCKET", "@/org/freedesktop/systemd1/notify/42")
        assert notify_socket() == "\0/org/freedesktop/systemd1/notify/42"
        monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
        assert notify_socket() is None

    def test_a_socket_gone_is_logged_not_raised(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """systemd's socket missing: a warning, and the daemon goes on."""
        monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify.sock")
        with capture_logs() as logs:
            assert notify("READY=1") is False
        assert [e["event"] for e in logs] == ["cannot notify systemd"]
