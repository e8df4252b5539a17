"""The durable log: interface, backends, and the factory that picks one from settings."""

from __future__ import annotations

from typing import Any

from broker.config import Settings
from broker.core.logrecords import Headers, NewRecord, Position, Record, TopicPartition, TopicSpec
from broker.log.interface import BeforeCommitHook, DurableLog, GroupConsumer, Tailer

__all__ = [
    "BeforeCommitHook",
    "DurableLog",
    "GroupConsumer",
    "Headers",
    "NewRecord",
    "Position",
    "Record",
    "Tailer",
    "TopicPartition",
    "TopicSpec",
    "open_log",
]


def open_log(settings: Settings, read_secret: Any = None) -> DurableLog:
    """The backend the settings name, not yet started; `read_secret` is
    broker.keys.secrets.read_secret (Kafka's SASL password, its client key's)."""
    if settings.backend.type == "kafka":
        from broker.log.kafka import KafkaLog  # aiokafka is only imported when used

        return KafkaLog(
            settings.backend.kafka,
            max_record_bytes=settings.max_record_bytes,
            instance=settings.instance_name,
            **({"read_secret": read_secret} if read_secret else {}),
        )
    from broker.log.embedded import EmbeddedLog

    emb = settings.backend.embedded
    return EmbeddedLog(
        settings.embedded_path,
        synchronous=emb.synchronous,
        session_timeout=emb.session_timeout,
    )
