"""Daemon processes on the parametrised backend; all stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.daemon import Daemon

DaemonFactory = Callable[..., Daemon]


@pytest.fixture
def daemon_env(
    backend: str, tmp_path: Path, unique_prefix: str, request: pytest.FixtureRequest
) -> dict[str, str]:
    env = {
        "DOCBROKER_DATA_DIR": str(tmp_path / "data"),
        "DOCBROKER_BACKEND_TYPE": backend,
        "DOCBROKER_BACKEND_TOPIC_PREFIX": unique_prefix,
        "DOCBROKER_BACKEND_PARTITIONS": "3",
        "DOCBROKER_BACKEND_EMBEDDED_SESSION_TIMEOUT": "3",
    }
    if backend == "kafka":
        env["DOCBROKER_BACKEND_KAFKA_BOOTSTRAP_SERVERS"] = request.getfixturevalue(
            "kafka_broker"
        ).bootstrap
        env["DOCBROKER_BACKEND_KAFKA_SESSION_TIMEOUT_MS"] = "6000"
    return env


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
