"""The conformance suite runs on every backend: embedded, the single Kafka broker, and
the 3-node Kafka cluster (topics replicated 3 times, min.insync.replicas 2).

The single broker is reached on its SASL_SSL listener as User:docbroker, which has
only the README's ACLs (tests/kafka_secure.py): every topic, group and transactional
id of the suite is under the prefix `docbroker.`, as a deployment's are.
"""

from __future__ import annotations

import pytest

from tests.kafka_secure import SecureKafka


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("kafka", marks=pytest.mark.kafka),
        pytest.param("kafka-cluster", marks=[pytest.mark.kafka, pytest.mark.kafka_cluster]),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def secure_listener(backend: str, request: pytest.FixtureRequest) -> SecureKafka | None:
    if backend != "kafka":
        return None
    return request.getfixturevalue("kafka_secure")


@pytest.fixture
def kafka_bootstrap(kafka_bootstrap: str | None, secure_listener: SecureKafka | None) -> str | None:
    return secure_listener.bootstrap if secure_listener else kafka_bootstrap


@pytest.fixture
def kafka_security(secure_listener: SecureKafka | None) -> dict[str, str]:
    return secure_listener.sasl() if secure_listener else {}


@pytest.fixture
def unique_prefix(unique_prefix: str) -> str:
    """Under the prefix the README's ACLs allow."""
    return f"docbroker.{unique_prefix}"
