"""Fixtures of the simulator tests: simulators in this process, callers of both systems."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.national_axis.simulator import SimulatorConfig, build_simulator_app
from tests.axis.kit import SECRET_A, SECRET_B, Caller, Clients, direct_config


@pytest.fixture
async def start() -> AsyncIterator[Clients]:
    """Start simulators (each a TestServer) and give the two systems' callers."""
    opened: list[TestClient] = []

    async def factory(config: SimulatorConfig) -> tuple[Caller, Caller]:
        client = TestClient(TestServer(build_simulator_app(config)))
        await client.start_server()
        opened.append(client)
        return Caller(client, "vdxp-h35", SECRET_A), Caller(client, "vdxp-h36", SECRET_B)

    yield factory
    for client in opened:
        await client.close()


@pytest.fixture
async def pair(start: Clients) -> tuple[Caller, Caller]:
    return await start(direct_config())
