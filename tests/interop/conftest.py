"""Fixtures that run VNPT's unchanged SDK jars (tests/interop/java_sdk.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.interop.java_sdk import (
    JavaSdk,
    compile_harness,
    trust_store_args,
    unavailable_reason,
)


@pytest.fixture(scope="session")
def java_sdk_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compiled harness; the tests that need it are skipped, with the reason
    shown, only where the jars or Java are absent."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return compile_harness(tmp_path_factory.mktemp("sdk-harness"))


@pytest.fixture
def java_sdk(java_sdk_build: Path, tmp_path: Path) -> Iterator[Callable[..., JavaSdk]]:
    """Start agency systems running the real SDK; all are stopped after the test."""
    started: list[JavaSdk] = []

    def start(trust: Path | None = None) -> JavaSdk:
        """An agency system; `trust`: the CA (PEM) its HTTPS trusts."""
        jvm = trust_store_args(trust, tmp_path) if trust else ()
        sdk = JavaSdk(java_sdk_build, tmp_path / f"sdk-{len(started)}.log", jvm)
        started.append(sdk)
        return sdk

    yield start
    for sdk in started:
        sdk.close()
