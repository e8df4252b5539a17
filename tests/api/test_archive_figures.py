"""Figures of `docbroker archive` over a few hundred real documents (slow): the time
and size of an export and of its verification, printed (`pytest -s`;
ARCHIVE_FIGURES_DOCUMENTS=N for another number)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.api.archive_kit import (
    ack,
    doc_id,
    events_settled,
    files_of,
    mailbox,
    now_iso,
    run,
    submit,
)
from tests.api.conftest import AgencyClient

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["embedded"])]
DOCUMENTS = int(os.environ.get("ARCHIVE_FIGURES_DOCUMENTS", "300"))


@pytest.fixture
def api_settings_env(api_settings_env: dict[str, str]) -> dict[str, str]:
    """Hundreds of submissions as one agency: no rate limit (tested in test_limits)."""
    return {**api_settings_env, "DOCBROKER_HTTP_RATE_LIMIT": "0"}


async def test_export_and_verify_figures(
    api: AgencyClient, api_settings_env: dict[str, str], tmp_path: Path
) -> None:
    """Every acknowledged document is archived once; the folder verifies."""
    await submit(api, range(DOCUMENTS))
    entries = await mailbox(api, DOCUMENTS)
    for n in range(DOCUMENTS):
        await ack(api, entries[doc_id(n)])
    await events_settled(api, DOCUMENTS)
    folder = tmp_path / "archive"
    started = time.monotonic()
    done = await run(
        api_settings_env, "archive", "export", "--until", now_iso(), str(folder), "--json"
    )
    export_s = time.monotonic() - started
    assert done.exit_code == 0, done.output
    (written,) = json.loads(done.output)["written"]
    started = time.monotonic()
    assert (await run(api_settings_env, "archive", "verify", str(folder))).exit_code == 0
    verify_s = time.monotonic() - started
    size = sum(len(b) for b in files_of(folder).values())
    print(
        f"\narchive of {DOCUMENTS} documents: {written['records']} records, {size:,} bytes, "
        f"export {export_s:.2f} s, verify {verify_s:.2f} s"
    )
    assert written["records"] >= DOCUMENTS * 3  # an envelope, its receipts, its events
