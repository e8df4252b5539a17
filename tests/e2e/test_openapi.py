"""schemas/openapi.yaml against a live daemon: real answers of every operation conform
to it, and schemathesis, fuzzing every operation with an agency's token, finds no
server error and no answer the document does not describe."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis import checks

from broker.cli.client import ApiProblem
from tests.e2e.conftest import DaemonFactory
from tests.e2e.daemon import Daemon
from tests.edxml_samples import document

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SENDER, RECIPIENT = "000.00.00.H35", "000.00.01.H35"


@pytest.fixture
def backend() -> str:
    """The API's shape does not depend on the log: the embedded backend is enough."""
    return "embedded"


def conforms(
    daemon: Daemon, path: str, method: str, *, token: str, expect: int = 200, **case: Any
) -> Any:
    """Call one operation for real and check the answer against the document."""
    schema = schemathesis.openapi.from_path(ROOT / "schemas" / "openapi.yaml")
    operation = schema[path][method]
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    headers = {**auth, **case.pop("headers", {})}  # type: ignore[dict-item]
    made = operation.Case(headers=headers, **case)  # type: ignore[arg-type]
    response = made.call(base_url=daemon.url)
    assert response.status_code == expect, response.text
    made.validate_response(
        response,
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            checks.response_headers_conformance,
        ],
    )
    return response


def eventually(probe: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_real_answers_conform(daemons: DaemonFactory) -> None:
    daemon = daemons()
    sender, recipient = daemon.client_for(SENDER), daemon.client_for(RECIPIENT)
    sender_token, recipient_token = sender.token or "", recipient.token or ""
    doc = f"{SENDER},2026/11/24,1/OPENAPI"
    data = document(sender=SENDER, recipients=(RECIPIENT,), document_id=doc)
    submit = {"body": data, "media_type": "application/xml"}
    first = conforms(
        daemon, "/v1/envelopes", "POST", token=sender_token, expect=202,
        headers={"Idempotency-Key": "k1"}, **submit,
    ).json()  # fmt: skip
    replayed = conforms(
        daemon, "/v1/envelopes", "POST", token=sender_token, expect=202,
        headers={"Idempotency-Key": "k1"}, **submit,
    )  # fmt: skip
    assert replayed.headers.get("idempotent-replayed") == ["true"], replayed.headers
    eventually(lambda: bool(recipient.inbox(RECIPIENT)["envelopes"]), "never delivered")
    box = {"agency": RECIPIENT}
    conforms(daemon, "/v1/mailboxes/{agency}/envelopes", "GET", token=recipient_token,
             path_parameters=box, query={"wait": 1})  # fmt: skip
    entry = {**box, "message_id": first["message_id"]}
    conforms(daemon, "/v1/mailboxes/{agency}/envelopes/{message_id}", "GET",
             token=recipient_token, path_parameters=entry)  # fmt: skip
    conforms(daemon, "/v1/mailboxes/{agency}/envelopes/{message_id}/ack", "POST",
             token=recipient_token, path_parameters=entry)  # fmt: skip
    conforms(daemon, "/v1/agencies", "GET", token=sender_token)
    resent = conforms(daemon, "/v1/envelopes", "POST", token=sender_token, **submit).json()
    assert resent["duplicate"] and resent["message_id"] == first["message_id"]

    def acknowledged() -> bool:
        try:
            state = sender.document(doc)
        except ApiProblem:
            return False
        return bool(state["recipients"] and state["recipients"][0]["acknowledged_at"])

    eventually(acknowledged, "the documents view never showed the acknowledgement")
    # schemathesis leaves a path parameter's slashes as they are: encode them here
    quoted = {"document_id": urllib.parse.quote(doc, safe="")}
    conforms(daemon, "/v1/documents/{document_id}", "GET", token=sender_token,
             path_parameters=quoted)  # fmt: skip
    conforms(daemon, "/v1/documents/{document_id}/trace", "GET", token=sender_token,
             path_parameters=quoted)  # fmt: skip
    found = conforms(daemon, "/v1/documents", "GET", token=recipient_token,
                     query={"code": "12/ubnd-vp", "status": "acknowledged"}).json()  # fmt: skip
    assert [d["document_id"] for d in found["documents"]] == [doc]
    conforms(daemon, "/v1/documents", "GET", token=sender_token, expect=400,
             query={"from": "yesterday"})  # fmt: skip
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.yaml"):
        conforms(daemon, path, "GET", token="")


def test_schemathesis_finds_no_server_error(daemons: DaemonFactory) -> None:
    daemon = daemons()
    token = daemon.tokens.token(RECIPIENT)
    daemon.client_for(RECIPIENT)
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{daemon.url}/openapi.yaml",
            "--header",
            f"Authorization: Bearer {token}",
            # Every check but one: a body the document allows (any bytes) is not
            # necessarily an edXML package, and docbroker rightly refuses those.
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-time",
            os.environ.get("DOCBROKER_TEST_SCHEMATHESIS_SECONDS", "45"),
            "--seed",
            "20261124",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert "Error handling request" not in daemon.logs(), "a request made the server fail"
