"""End to end, on the embedded backend: an irregular package as the national axis
sends them reaches its recipient, its warnings in the 202 answer, in the audit trail
(`docbroker trace`) and counted in /metrics; a strict sender's is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from broker.cli.client import ApiProblem
from tests.e2e.conftest import DaemonFactory
from tests.e2e.daemon import Daemon
from tests.e2e.test_walking_skeleton import wait_for_entries
from tests.edxml_samples import full_document, hop
from tests.forwarded import assert_forwarded

pytestmark = pytest.mark.e2e

IRREGULAR = full_document(
    trace=hop("null"), extra_header="<edXML:VendorRef>QLVB-42</edXML:VendorRef>"
)
CODES = ["unknown-element", "trace-organ-id-missing"]
SENDER = "000.00.00.H35"


def docbroker(daemon: Daemon, *args: str, agency: str = "") -> subprocess.CompletedProcess[str]:
    """The CLI as an agency's operator runs it (the URL and its token), or as the
    broker's administrator (the daemon's configuration)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
    if agency:
        daemon.client_for(agency)  # its token works
        env.update(DOCBROKER_URL=daemon.url, DOCBROKER_TOKEN=daemon.tokens.token(agency))
    else:
        env.update(daemon.env)
    return subprocess.run(
        [sys.executable, "-m", "broker", *args], env=env, capture_output=True, text=True, timeout=60
    )


def metrics(daemon: Daemon) -> str:
    with urllib.request.urlopen(f"{daemon.url}/metrics", timeout=5) as resp:
        return resp.read().decode()


def until(check, what: str, timeout: float = 20):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
    return found


@pytest.mark.parametrize("backend", ["embedded"])
def test_irregular_package_from_send_to_mailbox_trail_and_metric(
    daemons: DaemonFactory, tmp_path: Path
) -> None:
    daemon = daemons()
    client = daemon.client()
    package = tmp_path / "from-the-axis.edxml"
    package.write_bytes(IRREGULAR)
    sent = docbroker(daemon, "send", "--json", str(package), agency=SENDER)
    assert sent.returncode == 0, sent.stderr
    (accepted,) = json.loads(sent.stdout)  # the 202 answer
    assert accepted["duplicate"] is False
    assert [w["code"] for w in accepted["warnings"]] == CODES
    line = IRREGULAR[: IRREGULAR.index(b"<edXML:VendorRef>")].count(b"\n") + 1
    assert accepted["warnings"][0]["location"] == {
        "line": line,
        "path": "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/VendorRef",
    }
    for agency in ("000.00.01.H35", "000.00.02.H35"):
        (entry,) = wait_for_entries(daemon, agency, 1)
        assert entry["message_id"] == accepted["message_id"]
        fetched = client.fetch(agency, entry["message_id"])
        assert_forwarded(IRREGULAR, fetched.body, sha256=entry["sha256"])  # vendor data kept

    resent = docbroker(daemon, "send", str(package), agency=SENDER)  # answered, not taken
    assert f"accepted as {accepted['message_id']}" in resent.stdout
    assert f"{package}:{line}:0: warning: unknown-element: edXML:VendorRef" in resent.stderr

    document_id = accepted["document_id"]
    trail = until(
        lambda: (r := docbroker(daemon, "trace", "--json", document_id)).returncode == 0 and r,
        "no audit trail",
    )
    (event,) = [e for e in json.loads(trail.stdout) if e["type"] == "accepted"]
    assert event["details"]["warnings"] == accepted["warnings"]
    text = docbroker(daemon, "trace", document_id).stdout
    assert "warnings: unknown-element, trace-organ-id-missing" in text

    shown = until(
        lambda: 'docbroker_envelope_warnings_total{code="unknown-element"} 1.0' in metrics(daemon),
        "the warning was not counted",
    )
    assert shown  # once: the resend was not taken again
    assert 'docbroker_envelope_warnings_total{code="trace-organ-id-missing"} 1.0' in metrics(daemon)

    made = docbroker(daemon, "agencies", "update", "H35", "--strict", "true")
    assert made.returncode == 0, made.stderr
    again = IRREGULAR.replace(b",12/UBND-VP<", b",13/UBND-VP<")

    def refused() -> ApiProblem | None:
        try:
            client.submit(again)
        except ApiProblem as exc:
            return exc
        return None  # accepted: the daemon has not followed the change yet

    problem = until(refused, "the strict policy never applied")
    assert problem.status == 422 and [p.code for p in problem.problems] == CODES
