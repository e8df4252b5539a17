"""How docbroker's topics are created: partitions, compaction, record size, from the
settings."""

from __future__ import annotations

from broker.config import Settings
from broker.core.logrecords import TopicSpec
from broker.core.topics import Topics


def topic_specs(settings: Settings, topics: Topics) -> list[TopicSpec]:
    """Every topic with the configured partitions and the envelope size limit."""
    return [
        TopicSpec(
            getattr(topics, name),
            settings.backend.partitions,
            settings.max_record_bytes,
            compacted=name in Topics.COMPACTED,
        )
        for name in Topics.__dataclass_fields__
    ]
