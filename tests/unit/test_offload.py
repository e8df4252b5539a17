"""broker.offload: a large body's CPU work runs in a worker thread, a small one's where
it is; the answers are the same either way."""

from __future__ import annotations

import base64
import hashlib
import threading

import pytest
import structlog

from broker import offload
from broker.offload import LARGE, b64encode, off_loop, sha256_hex


class TestOffLoop:
    async def test_a_large_body_is_worked_on_in_another_thread(self) -> None:
        """Over LARGE bytes the function runs off the event loop's thread."""
        here = threading.get_ident()
        assert await off_loop(LARGE + 1, threading.get_ident) != here

    async def test_a_small_body_is_worked_on_here(self) -> None:
        """Up to LARGE bytes a thread would cost more than the work: it runs here."""
        here = threading.get_ident()
        assert await off_loop(LARGE, threading.get_ident) == here

    async def test_the_thread_keeps_the_log_context(self) -> None:
        """What the request bound for its log lines (its message id) is bound there too."""
        with structlog.contextvars.bound_contextvars(message_id="m-1"):
            seen = await off_loop(LARGE + 1, structlog.contextvars.get_contextvars)
        assert seen["message_id"] == "m-1"

    async def test_hash_and_base64_are_those_of_the_standard_library(self) -> None:
        for data in (b"", b"abc", bytes(range(256)) * 4096):  # the last is 1 MiB
            assert await sha256_hex(data) == hashlib.sha256(data).hexdigest()
            assert await b64encode(data) == base64.b64encode(data).decode("ascii")

    async def test_a_large_hash_runs_off_the_loop(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """sha256_hex of a 1 MiB body is computed in a worker thread."""
        threads: list[int] = []
        real = offload._sha256_hex

        def spy(data: bytes) -> str:
            threads.append(threading.get_ident())
            return real(data)

        monkeypatch.setattr(offload, "_sha256_hex", spy)
        await sha256_hex(b"x" * (1024 * 1024))
        assert threads and threads[0] != threading.get_ident()
