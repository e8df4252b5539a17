"""Daemon processes on the parametrised backend; all stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import backend_env
from tests.e2e.daemon import Daemon, TokenBook
from tests.pki import install_keys

DaemonFactory = Callable[..., Daemon]


@pytest.fixture
def daemon_env(
    backend: str, tmp_path: Path, unique_prefix: str, kafka_bootstrap: str | None
) -> dict[str, str]:
    install_keys(tmp_path / "data")
    env = backend_env(backend, tmp_path / "data", unique_prefix, kafka_bootstrap)
    # Throughput tests submit hundreds per second as one agency; rate limits are
    # tested in process (tests/api).
    return {**env, "DOCBROKER_HTTP_RATE_LIMIT": "0"}


@pytest.fixture
def daemons(tmp_path: Path, daemon_env: dict[str, str]) -> Iterator[DaemonFactory]:
    started: list[Daemon] = []
    tokens = TokenBook(daemon_env)

    def factory(name: str = "docbroker", **extra: str) -> Daemon:
        d = Daemon(tmp_path / name, {**daemon_env, **extra}, name=name, tokens=tokens)
        started.append(d)
        return d.start()

    yield factory
    for d in started:
        d.kill()
