"""End to end on the suite's SASL_SSL listener: an ACL taken away from a running
daemon's principal. User:limited has the README's ACLs for the prefix `limited.`;
a real `docbroker serve` runs as it. When its Write on the topics is removed, the
door answers 503 (nothing accepted that is not durable) and `/readyz` answers 503
naming the principal, the operation and the topic; once the ACL is back, it is ready
again by itself and every document it accepted, before and after, is delivered:
none lost, none twice."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from broker.cli.client import ApiProblem
from tests.e2e.conftest import DaemonFactory
from tests.e2e.faults import readyz
from tests.e2e.test_walking_skeleton import wait_for_entries
from tests.edxml_samples import document
from tests.kafka_secure import SecureKafka

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.parametrize("backend", ["kafka"])]

RECIPIENT = "000.00.01.H35"
WRITE = ["--allow-principal", "User:limited", "--operation", "Write"]
TOPICS = ["--topic", "limited.", "--resource-pattern-type", "prefixed"]


@pytest.fixture
def unique_prefix(unique_prefix: str) -> str:
    """Topics and groups under the prefix User:limited's ACLs allow."""
    return f"limited.{unique_prefix}"


@pytest.fixture
def limited(kafka_secure: SecureKafka) -> SecureKafka:
    kafka_secure.add_readme_acls("User:limited", "limited.")
    return kafka_secure


def limited_env(secure: SecureKafka) -> dict[str, str]:
    fields = secure.sasl("limited", client_id="limited.docbroker")  # its transactional ids
    env = {f"DOCBROKER_BACKEND_KAFKA_{k.upper()}": str(v) for k, v in fields.items()}
    return env | {"DOCBROKER_BACKEND_KAFKA_SASL_PASSWORD_FILE": "", "DOCBROKER_KAFKA_PASSWORD":
                  Path(secure.users["limited"]["password_file"]).read_text().strip()}  # fmt: skip


def package(n: int) -> bytes:
    return document(recipients=(RECIPIENT,), document_id=f"000.00.00.H35,2026/12/02,{n}/ACL")


def until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.timeout(240)
def test_an_acl_taken_away_is_named_by_readyz_and_nothing_is_lost(
    daemons: DaemonFactory, limited: SecureKafka
) -> None:
    daemon = daemons(**limited_env(limited))
    client = daemon.client_for("000.00.00.H35")
    accepted: list[str] = []
    refusals: list[tuple[int, float | None]] = []  # (status, Retry-After)

    def submit(n: int) -> bool:
        try:
            accepted.append(client.submit(package(n))["message_id"])
            return True
        except ApiProblem as exc:
            refusals.append((exc.status, exc.retry_after))
            return False

    assert submit(0)
    limited.acls("--remove", "--force", *WRITE, *TOPICS)
    try:
        n = 1
        while submit(n):  # until the brokers' authorizer has the removal
            n += 1
            assert n < 200, "the door kept accepting without Write on its topic"
        status, body = readyz(daemon.url)
        assert status == 503, body
        log_check = json.loads(body)["checks"]["log"]
        assert "Kafka refused User:limited Write on topic limited." in log_check, log_check
        assert "kafka-acls --add --allow-principal User:limited --operation Write" in log_check
    finally:
        limited.acls("--add", *WRITE, *TOPICS)
    until(lambda: readyz(daemon.url)[0] == 200, 90, "ready again once the ACL is back")
    for m in range(n, n + 5):
        until(lambda m=m: submit(m), 30, "accepted again")  # type: ignore[misc]

    entries = wait_for_entries(daemon, RECIPIENT, len(accepted), timeout=90)
    delivered = Counter(e["message_id"] for e in entries)
    print(
        f"\nACL taken away: {len(accepted)} accepted, {len(refusals)} refused, "
        f"{len(entries)} delivered ({len(delivered)} distinct)"
    )
    assert refusals, "the door refused while it could not write"
    assert all(status == 503 and retry for status, retry in refusals), refusals
    assert sorted(delivered) == sorted(accepted) and set(delivered.values()) == {1}
    time.sleep(3)  # room for a late second delivery to show
    again = wait_for_entries(daemon, RECIPIENT, len(accepted), timeout=30)
    assert len(again) == len(accepted), "nothing delivered twice later"
