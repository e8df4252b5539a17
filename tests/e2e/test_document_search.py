"""End to end, on each backend: a real daemon takes documents with numbers and
notations; they are found by the HTTP API (as each agency may see them) and by
`docbroker documents find` beside the daemon, and traced by their number."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import DaemonFactory
from tests.e2e.test_province import cli, receive
from tests.search_kit import numbered

pytestmark = pytest.mark.e2e

PROVINCE = "000.00.00.H35"  # H35
DISTRICT = "000.00.41.H35"  # H35.105
COMMUNE = "000.20.41.H35"  # H35.105.03386
SO_NOI_VU = "000.00.02.H35"  # H35.S02


def eventually(probe: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
    return found


def codes(page: dict[str, Any]) -> list[tuple[str, str]]:
    return [(d["sender"], d["code"]) for d in page["documents"]]


def test_find_by_number_over_http_and_the_cli_and_trace_by_number(
    daemons: DaemonFactory, daemon_env: dict[str, str]
) -> None:
    daemon = daemons()
    client = daemon.client()
    client.submit(numbered("345", "SCT-VP", recipients=(SO_NOI_VU, DISTRICT)))
    client.submit(numbered("346", "SCT-VP", recipients=(DISTRICT,), subject="Báo cáo quý"))
    client.submit(numbered("345", "SCT-VP", sender=DISTRICT, recipients=(COMMUNE,)))
    receive(daemon.client_for(SO_NOI_VU), SO_NOI_VU)  # fetched and acknowledged

    province = daemon.client_for(PROVINCE)
    acknowledged = eventually(
        lambda: codes(province.find_documents(status="acknowledged")), "never acknowledged"
    )
    assert acknowledged == [(PROVINCE, "345/SCT-VP")]
    district = daemon.client_for(DISTRICT)
    seen = eventually(
        lambda: (page := codes(district.find_documents(code="345/sct-vp"))) and len(page) == 2,
        "the district never saw both",
    )
    assert seen
    assert codes(district.find_documents(code="345/*")) == [
        (DISTRICT, "345/SCT-VP"),  # sent
        (PROVINCE, "345/SCT-VP"),  # received
    ]
    assert codes(province.find_documents(code="345/*")) == [(PROVINCE, "345/SCT-VP")]
    commune = daemon.client_for(COMMUNE)
    assert codes(commune.find_documents(sender="H35")) == []

    run = cli(daemon_env, "documents", "find", "--code", "345/SCT-VP", "--json")
    assert run.returncode == 0, run.stderr
    assert [(d["sender"], d["code"]) for d in json.loads(run.stdout)["documents"]] == [
        (DISTRICT, "345/SCT-VP"),
        (PROVINCE, "345/SCT-VP"),
    ]
    run = cli(daemon_env, "documents", "find", "--sender", "H35", "--recipient", "H35.105")
    assert run.returncode == 0, run.stderr
    assert "346/SCT-VP  Báo cáo quý" in run.stdout and "345/SCT-VP" in run.stdout
    run = cli(daemon_env, "documents", "find", "--status", "acknowledged", "--json")
    (doc,) = json.loads(run.stdout)["documents"]
    assert [r["state"] for r in doc["recipients"]] == ["acknowledged", "routed"]
    bad = cli(daemon_env, "documents", "find", "--status", "read")
    assert bad.returncode == 2 and "bad-request" in bad.stderr

    one = cli(daemon_env, "trace", "346/SCT-VP")
    assert one.returncode == 0, one.stderr
    assert f"{PROVINCE},2026/11/24,346/SCT-VP" in one.stdout and "routed" in one.stdout
    several = cli(daemon_env, "trace", "345/SCT-VP")
    assert several.returncode == 1
    assert f"{DISTRICT},2026/11/24,345/SCT-VP" in several.stderr
    assert f"{PROVINCE},2026/11/24,345/SCT-VP" in several.stderr and "--sender" in several.stderr
    chosen = cli(daemon_env, "trace", "345/SCT-VP", "--sender", "H35.105", "--json")
    assert chosen.returncode == 0, chosen.stderr
    assert {e["document_id"] for e in json.loads(chosen.stdout)} == {
        f"{DISTRICT},2026/11/24,345/SCT-VP"
    }
    missing = cli(daemon_env, "trace", "999/NONE")
    assert missing.returncode == 1 and "not-found" in missing.stderr
