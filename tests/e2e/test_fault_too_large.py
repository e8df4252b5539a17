"""Fault: one document whose forwarded copy exceeds the record limit, in the middle of a
batch of ordinary ones.

The package itself fits (it is accepted at the door), but its Content is 420,000
`>` characters, each of which becomes `&gt;` in the stamped and signed copy the
pipeline forwards: 1.68 MB against a record limit of 430 kB + 1 MiB. Its
recipients cannot get it, so it is refused (`too-large`: a dead letter, an event,
one status 02 to its sender) and everything else in its batch is delivered once.
The pipeline's worker processes are held (SIGSTOP) while the documents are
submitted, so that they meet in one batch.
"""

from __future__ import annotations

import signal

import pytest

from tests.e2e.conftest import DaemonFactory
from tests.e2e.faults import EVERY_BACKEND, check, metric, pipeline_workers, signal_each
from tests.edxml_samples import document
from tests.ledger import Expected

pytestmark = [pytest.mark.e2e, pytest.mark.slow, EVERY_BACKEND]

SENDER = "000.00.00.H35"
RECIPIENTS = ("000.00.01.H35", "000.00.02.H35")
CODES = ("H35.S01", "H35.S02")
ENVELOPE_LIMIT = 430_000  # bytes; records may be 1 MiB more (stamps, headers)
ESCAPED = 420_000  # `>` characters: 1.68 MB once escaped
ORDINARY = 60


def doc_id(n: int) -> str:
    return f"{SENDER},2026/11/24,{n}/LARGE"


def oversized(document_id: str) -> bytes:
    data = document(sender=SENDER, recipients=RECIPIENTS, document_id=document_id)
    empty = b"<edXML:Content></edXML:Content>"
    assert empty in data
    return data.replace(empty, b"<edXML:Content>" + b">" * ESCAPED + b"</edXML:Content>")


@pytest.fixture
def daemon_env(daemon_env: dict[str, str]) -> dict[str, str]:
    """The deployment's settings (its daemons, CLI and ledger) with the smaller limit."""
    return {**daemon_env, "DOCBROKER_LIMITS_MAX_ENVELOPE_BYTES": str(ENVELOPE_LIMIT)}


@pytest.mark.timeout(600)
def test_an_oversized_output_is_refused_once_and_its_batch_delivered_once(
    daemons: DaemonFactory, daemon_env: dict[str, str], backend: str
) -> None:
    """60 ordinary documents and one too large to forward, in one batch: the 60 are
    delivered exactly once to each recipient, with no status 02; the large one is
    refused exactly once, with one 02 to its sender."""
    daemon = daemons("too-large")
    assert daemon.proc is not None
    client = daemon.client_for(SENDER)
    workers = pipeline_workers(daemon.proc.pid)
    assert len(workers) >= 1, "the daemon runs its pipeline in worker processes"
    big = ORDINARY // 2
    signal_each(workers, signal.SIGSTOP)
    try:
        for n in range(ORDINARY + 1):
            data = (
                oversized(doc_id(n))
                if n == big
                else document(sender=SENDER, recipients=RECIPIENTS, document_id=doc_id(n))
            )
            client.submit(data)
    finally:
        signal_each(workers, signal.SIGCONT)
    expected = Expected(
        sender="H35",
        documents={doc_id(n): CODES for n in range(ORDINARY + 1)},
        refused={doc_id(big): ("too-large",)},
    )
    _, problems = check(f"too-large ({backend})", daemon_env, expected, ORDINARY + 1)
    assert problems == []
    assert metric(daemon.url, "docbroker_pipeline_records_total") == ORDINARY + 1
