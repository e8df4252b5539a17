"""Fixtures shared by the read-model tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest


@pytest.fixture
async def views() -> AsyncIterator[list[Any]]:
    """Views (mailbox, documents) made by a test; any still running is stopped at
    teardown."""
    made: list[Any] = []
    yield made
    for view in made:
        if view.ready:
            await view.stop()
