"""The words of a Kafka refusal: the principal, the operation, the resource and the
kafka-acls command that allows it (broker.log.kafka_security; the real broker's
refusals: tests/log/test_kafka_security.py)."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from broker.config import KafkaSettings
from broker.log.kafka_security import principal_of, refusal


@pytest.mark.parametrize(
    ("exc", "words", "command"),
    [
        (
            TopicAuthorizationFailedError(),
            "Write on topic docbroker.inbound",
            "--operation Write --topic docbroker.inbound",
        ),
        (
            GroupAuthorizationFailedError(),
            "Read on group docbroker.pipeline",
            "--operation Read --group docbroker.pipeline",
        ),
        (
            TransactionalIdAuthorizationFailed(),
            "Write on transactional-id docbroker.append.i1",
            "--operation Write --transactional-id docbroker.append.i1",
        ),
        (
            ClusterAuthorizationFailedError(),
            "IdempotentWrite on cluster",
            "--operation IdempotentWrite --cluster",
        ),
    ],
)
def test_each_kind_of_refusal_is_named(exc: Exception, words: str, command: str) -> None:
    message = refusal(
        exc,
        "User:docbroker",
        "Write",
        ["docbroker.inbound"],
        group="docbroker.pipeline",
        txn_id="docbroker.append.i1",
    )
    assert message is not None
    assert message.startswith(f"Kafka refused User:docbroker {words}: add the ACL (kafka-acls")
    assert f"--add --allow-principal User:docbroker {command}" in message


def test_other_errors_are_not_refusals() -> None:
    assert refusal(KafkaConnectionError(), "User:docbroker", "Write", ["t"]) is None


def test_the_principal_is_the_sasl_user_or_anonymous() -> None:
    sasl = KafkaSettings(security_protocol="SASL_SSL", sasl_username="docbroker")
    assert principal_of(sasl) == "User:docbroker"
    assert principal_of(KafkaSettings()) == "User:ANONYMOUS"
