"""The conformance suite runs on every backend: embedded, the single Kafka broker, and
the 3-node Kafka cluster (topics replicated 3 times, min.insync.replicas 2)."""

from __future__ import annotations

import pytest


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("kafka", marks=pytest.mark.kafka),
        pytest.param("kafka-cluster", marks=[pytest.mark.kafka, pytest.mark.kafka_cluster]),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param
