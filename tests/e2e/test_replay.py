"""`docbroker rejected replay` against running deployments, on each backend: a
document to an agency the directory did not know is replayed once the agency is
added, and an envelope the national axis refused is replayed once it accepts
again. Every record of the output topics is counted: no duplicate, no false 02."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from tests.e2e.conftest import DaemonFactory
from tests.e2e.test_province import PROVINCE, V, cli, inbox, read_topic, receive
from tests.e2e.test_two_provinces import (  # noqa: F401 - fixtures
    COMMUNE_A,
    COMMUNE_B,
    Province,
    Simulator,
    axis,
    provinces,
)
from tests.edxml_samples import document

pytestmark = [pytest.mark.e2e]

NEW_CODE, NEW_102 = "H35.S77", "000.00.77.H35"  # not in the directory until the test adds it


def wait_for(check, timeout: float = 30, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            assert found, f"timed out waiting for {what}"
            return found
        time.sleep(0.3)


def letters(env: dict[str, str], **only: str) -> list[dict]:
    run = cli(env, "rejected", "list", "--json")
    assert run.returncode == 0, run.stderr
    return [d for d in json.loads(run.stdout) if all(d[k] == v for k, v in only.items())]


def replay(env: dict[str, str], *args: str):
    return cli(env, "rejected", "replay", *args)


def statuses_to(env: dict[str, str], agency: str) -> Counter[tuple[str, str]]:
    """(status code, message id) of every status record in `mailbox` for `agency`."""
    return Counter(
        (r.header_str("status-code"), r.header_str("message-id"))
        for r in read_topic(env, "mailbox")
        if r.header_str("kind") == "status" and r.header_str("recipient") == agency
    )


def test_a_refused_document_is_replayed_once_the_agency_is_added(
    daemons: DaemonFactory, daemon_env: dict[str, str]
) -> None:
    daemon = daemons()
    client = daemon.client()
    doc = "000.00.00.H35,2026/11/20,301/UBND-VP"
    taken = client.submit(document(sender=PROVINCE, recipients=(NEW_102,), document_id=doc))
    (letter,) = wait_for(lambda: letters(daemon_env, stage="pipeline"), what="the dead letter")
    mid = letter["message_id"]
    assert mid == taken["message_id"] and letter["caller"] == "H35"  # its directory code
    assert [p["code"] for p in letter["problems"]] == ["unknown-recipient"]
    ((_, refusal),) = receive(client, PROVINCE)  # the sender heard, once
    assert V.check(refusal).status_code.value == "02"

    still = replay(daemon_env, mid, "--dry-run")
    assert still.returncode == 1 and "unknown-recipient" in still.stdout, still.stdout
    added = cli(daemon_env, "agencies", "add", NEW_CODE, "--name", "Sở Mới", "--code102", NEW_102)
    assert added.returncode == 0, added.stderr
    new_client = daemon.client_for(NEW_CODE)  # once the daemon follows the change
    would = json.loads(replay(daemon_env, mid, "--dry-run", "--json").stdout)
    assert [(r["outcome"], r["routes"]) for r in would] == [
        ("would-replay", [{"recipient": NEW_CODE, "route": "mailbox"}])
    ]
    assert letters(daemon_env, stage="pipeline")[0]["replayed_as"] is None  # dry: nothing

    done = replay(daemon_env, mid, "--json")
    assert done.returncode == 0, done.stderr
    ((result),) = json.loads(done.stdout)
    assert result["outcome"] == "replayed", result
    replay_id = result["replayed_as"]
    ((entry, data),) = receive(new_client, NEW_CODE)
    assert entry["message_id"] == replay_id and V.check(data).document_id == doc

    again = replay(daemon_env, mid)
    assert again.returncode == 0 and f"already replayed (as {replay_id})" in again.stdout
    time.sleep(2)  # anything a second replay would have caused has had time to land
    deliveries = Counter(
        (r.header_str("document-id"), r.header_str("recipient"))
        for r in read_topic(daemon_env, "mailbox")
        if r.header_str("kind") == "document"
    )
    assert deliveries == Counter({(doc, NEW_CODE): 1})
    # one 02 (the first refusal) and the 01 of the new agency's acknowledgement
    sent_back = statuses_to(daemon_env, "H35")
    assert sorted(code for code, _ in sent_back.elements()) == ["01", "02"], sent_back
    assert [d["message_id"] for d in letters(daemon_env)] == [mid]  # no new dead letter
    assert letters(daemon_env)[0]["replayed_as"] == replay_id

    traced = cli(daemon_env, "trace", doc, "--json")
    events = json.loads(traced.stdout)
    (replayed,) = [e for e in events if e["type"] == "replayed"]
    assert replayed["actor"].startswith("cli:") and replayed["message_id"] == mid
    assert replayed["details"]["replayed_as"] == replay_id
    assert [e["type"] for e in events].count("accepted") == 1
    assert "replayed by cli:" in cli(daemon_env, "trace", doc).stdout
    assert cli(daemon_env, "audit", "verify").returncode == 0
    missing = replay(daemon_env, "no-such-id", "--dry-run")
    assert missing.returncode == 1 and "not-found" in missing.stdout


def test_an_upstream_dead_letter_reaches_the_axis_once_replayed(
    provinces: tuple[Province, Province],  # noqa: F811 - the fixture
    axis: Simulator,  # noqa: F811 - the fixture
) -> None:
    """The axis refuses sendEdoc past the retry budget (3): a dead letter of stage
    upstream; once the axis accepts again, its replay reaches it, and the other
    province's commune, exactly once."""
    a, b = provinces
    axis.faults(fail_rate=1.0, fail_status=400, fail_code="InvalidData", operations=["sendEdoc"])
    doc = f"{COMMUNE_A},2026/11/20,302/UBND"
    a.client(COMMUNE_A).submit(document(sender=COMMUNE_A, recipients=(COMMUNE_B,), document_id=doc))
    env = a.daemon.env
    (letter,) = wait_for(lambda: letters(env, stage="upstream"), what="the upstream dead letter")
    axis.faults()
    dry = json.loads(replay(env, letter["message_id"], "--dry-run", "--json").stdout)
    assert [r["outcome"] for r in dry] == ["would-replay"]
    assert axis.state()["entries"]["edoc"] == {"initial": 0, "processing": 0, "done": 0, "fail": 0}

    done = replay(env, letter["message_id"])
    assert done.returncode == 0 and "replayed as" in done.stdout, done.stdout + done.stderr
    ((_, data),) = receive(b.client(COMMUNE_B), COMMUNE_B)
    assert V.check(data).document_id == doc
    again = replay(env, letter["message_id"])
    assert again.returncode == 0 and "already replayed" in again.stdout
    wait_for(lambda: axis.state()["entries"]["edoc"]["done"] == 1, what="the axis's done")
    time.sleep(2)
    assert sum(axis.state()["entries"]["edoc"].values()) == 1  # reached the axis once
    upstream = [r for r in read_topic(env, "upstream") if r.header_str("kind") == "document"]
    assert [r.header_str("message-id") for r in upstream] == [letter["message_id"]] * 2
    taken = [r for r in read_topic(b.daemon.env, "mailbox") if r.header_str("kind") == "document"]
    assert [(r.header_str("document-id"), r.header_str("recipient")) for r in taken] == [
        (doc, taken[0].header_str("recipient"))
    ]
    assert len(letters(env)) == 1 and letters(env)[0]["replayed_as"]
    (recipient,) = wait_for(
        lambda: [
            r
            for r in a.client(COMMUNE_A).document(doc)["recipients"]
            if r["sent_upstream_at"] and r["route"] == "upstream"
        ],
        what="the sender's view: sent upstream again",
    )
    assert recipient["refused_code"] is None
    inbox(a.client(COMMUNE_A), COMMUNE_A, 1)  # the 02 of the axis's refusal, and no other
    events = json.loads(cli(env, "trace", doc, "--json").stdout)
    types = [e["type"] for e in events]
    assert types.count("replayed") == 1 and "sent-upstream" in types
