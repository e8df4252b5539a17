"""Daemon processes on the parametrised backend; all stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import backend_env
from tests.e2e.daemon import Daemon
from tests.pki import install_keys

DaemonFactory = Callable[..., Daemon]


@pytest.fixture
def daemon_env(
    backend: str, tmp_path: Path, unique_prefix: str, kafka_bootstrap: str | None
) -> dict[str, str]:
    install_keys(tmp_path / "data")
    return backend_env(backend, tmp_path / "data", unique_prefix, kafka_bootstrap)


@pytest.fixture
def daemons(tmp_path: Path, daemon_env: dict[str, str]) -> Iterator[DaemonFactory]:
    started: list[Daemon] = []

    def factory(name: str = "docbroker", **extra: str) -> Daemon:
        d = Daemon(tmp_path / name, {**daemon_env, **extra}, name=name)
        started.append(d)
        return d.start()

    yield factory
    for d in started:
        d.kill()
