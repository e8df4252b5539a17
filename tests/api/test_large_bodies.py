"""A large envelope's CPU at the HTTP door runs off the event loop: it is hashed once,
in a worker thread, for the Idempotency-Key and the submission alike (issue 16)."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest

from broker import offload
from tests.api.conftest import AgencyClient
from tests.edxml_samples import document

pytestmark = pytest.mark.usefixtures("no_blocking_loop")

XML = {"Content-Type": "application/xml"}


@pytest.fixture
def backend() -> str:
    return "embedded"


@pytest.fixture
def api_settings_env(api_settings_env: dict[str, str]) -> dict[str, str]:
    return {**api_settings_env, "DOCBROKER_LIMITS_MAX_ENVELOPE_BYTES": "4 MiB"}


async def test_a_large_envelope_is_hashed_once_off_the_loop(
    api: AgencyClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    real = offload._sha256_hex

    def spy(data: bytes) -> str:
        threads.append(threading.get_ident())
        return real(data)

    monkeypatch.setattr(offload, "_sha256_hex", spy)
    data = document(padding=2 * 1024 * 1024)
    resp = await api.post(
        "/v1/envelopes", data=io.BytesIO(data), headers={**XML, "Idempotency-Key": "large-1"}
    )
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(threads) == 1
    assert threads[0] != threading.get_ident()
