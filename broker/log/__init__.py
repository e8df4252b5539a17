"""The durable log: interface, backends, and the factory that picks one from settings."""

from __future__ import annotations

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


def open_log(settings: Settings) -> DurableLog:
    """The backend the settings name, not yet started."""
    if settings.backend.type == "kafka":
        from broker.log.kafka import KafkaLog  # aiokafka is only imported when used

        return KafkaLog(
            settings.backend.kafka,
            max_record_bytes=settings.max_record_bytes,
            instance=settings.instance_name,
        )
    from broker.log.embedded import EmbeddedLog

    emb = settings.backend.embedded
    return EmbeddedLog(
        settings.embedded_path,
        synchronous=emb.synchronous,
        session_timeout=emb.session_timeout,
    )
