"""End to end on the suite's broker's SASL_SSL listener as User:docbroker, which has
only the README's ACLs (tests/kafka_secure.py): a real `docbroker serve` moves a
document from its sender to its recipients; the password (from the environment, as
in production) is nowhere in its output. A refused login stops the start with one
line naming the principal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import DaemonFactory
from tests.e2e.faults import readyz
from tests.e2e.test_walking_skeleton import send_list_fetch_ack
from tests.kafka_secure import SecureKafka

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.parametrize("backend", ["kafka"])]


def secure_env(secure: SecureKafka, password: str) -> dict[str, str]:
    fields = secure.sasl("docbroker", sasl_password_file="")
    env = {
        f"DOCBROKER_BACKEND_KAFKA_{name.upper()}": str(value)
        for name, value in fields.items()
        if name != "sasl_password_file"
    }
    return {**env, "DOCBROKER_KAFKA_PASSWORD": password}


@pytest.fixture
def unique_prefix(unique_prefix: str) -> str:
    """Topics and groups under the prefix the README's ACLs allow."""
    return f"docbroker.{unique_prefix}"


def test_a_document_end_to_end_as_docbroker(
    daemons: DaemonFactory, kafka_secure: SecureKafka
) -> None:
    password = Path(kafka_secure.users["docbroker"]["password_file"]).read_text().strip()
    assert password
    daemon = daemons(**secure_env(kafka_secure, password))
    send_list_fetch_ack(daemon)
    assert readyz(daemon.url)[0] == 200
    assert password not in daemon.logs()


def test_a_refused_login_stops_the_start(daemons: DaemonFactory, kafka_secure: SecureKafka) -> None:
    wrong = "wrong-password-of-docbroker"
    with pytest.raises(RuntimeError, match="daemon exited") as info:
        daemons(**secure_env(kafka_secure, wrong))
    logs = str(info.value)
    assert re.search(r"refused the login of User:docbroker \(SASL_SSL, SCRAM-SHA-512\)", logs)
    assert wrong not in logs
