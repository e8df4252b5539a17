"""The Kafka log's client settings: what every aiokafka client of it is made with
(the security settings, read once), and its errors named (a missing ACL too)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer

from broker.config import KafkaSettings
from broker.core.errors import BackendUnavailable
from broker.log.kafka_common import BATCH_OVERHEAD, wrapped
from broker.log.kafka_security import Refusals, SecretReader, client_security, refusal

log = structlog.get_logger(__name__)


class KafkaClients:
    """Mixed into KafkaLog: its settings, security and refusals."""

    settings: KafkaSettings
    max_record_bytes: int
    principal: str
    refusals: Refusals
    _security: dict[str, Any] | None
    _read_secret: SecretReader

    def common(self) -> dict[str, Any]:
        s = self.settings
        if self._security is None:
            self._security = client_security(s, self._read_secret)
        return {
            "bootstrap_servers": s.bootstrap_servers.split(","),
            "client_id": s.client_id,
            "request_timeout_ms": s.request_timeout_ms,
            **self._security,
        }

    def fail(
        self,
        exc: BaseException,
        what: str,
        operation: str,
        topics: Collection[str] = (),
        *,
        group: str = "",
        txn_id: str = "",
    ) -> Exception:
        """docbroker's error for `exc`; a missing ACL is named (and logged once in a
        while, and shown by /readyz while it goes on)."""
        message = refusal(exc, self.principal, operation, topics, group=group, txn_id=txn_id)
        if message is None:
            return wrapped(exc, what)
        if message not in self.refusals.current():
            log.error(message)
        self.refusals.note(message)
        return BackendUnavailable(message)

    def producer_kwargs(self) -> dict[str, Any]:
        return {
            **self.common(),
            "acks": "all",
            "enable_idempotence": True,
            "max_request_size": self.max_record_bytes + BATCH_OVERHEAD,
            "max_batch_size": self.settings.max_batch_bytes,
            "linger_ms": 0,
        }

    def consumer_kwargs(self) -> dict[str, Any]:
        fetch = self.max_record_bytes + BATCH_OVERHEAD
        return {
            **self.common(),
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed",
            "max_partition_fetch_bytes": fetch,
            "fetch_max_bytes": max(52428800, 2 * fetch),
        }

    def transactional_producer(self, transactional_id: str) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **self.producer_kwargs(),
            transactional_id=transactional_id,
            transaction_timeout_ms=self.settings.transaction_timeout_ms,
        )
