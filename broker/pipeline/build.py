"""The pipeline's processor, built once from the settings: schema compiled, keys loaded
(the daemon builds one, and so does each worker process)."""

from __future__ import annotations

from broker.clock import utc_now
from broker.config import Settings
from broker.core.topics import Topics
from broker.edxml.rules import Limits
from broker.edxml.validator import EnvelopeValidator
from broker.keys.trust import load_trust
from broker.pipeline.processing import InboundProcessor
from broker.trust.policy import SenderPolicy


def envelope_limits(settings: Settings) -> Limits:
    lim = settings.limits
    return Limits(
        max_bytes=int(lim.max_envelope_bytes),
        max_depth=lim.max_depth,
        max_elements=lim.max_elements,
        max_recipients=lim.max_recipients,
        max_attachments=lim.max_attachments,
    )


def build_processor(settings: Settings, *, reporting: bool = True) -> InboundProcessor:
    """The pipeline's processor: schema compiled and keys loaded, once. `reporting`:
    this process logs what goes wrong with the CRL files (a worker process does not:
    the daemon reads the same files and says it once)."""
    return InboundProcessor(
        Topics.with_prefix(settings.backend.topic_prefix),
        EnvelopeValidator(envelope_limits(settings), clock=utc_now),
        load_trust(settings, reporting=reporting),
        default_policy=SenderPolicy(
            settings.trust.default_policy, settings.trust.allow_legacy_sha1
        ),
        bind_by_subject_uid=settings.trust.bind_by_subject_uid,
        dedup_window_ms=settings.pipeline.dedup_window_days * 86400 * 1000,
        broker_name=settings.organ_name,
        strict_default=settings.validation.strict,
        max_record_bytes=settings.max_record_bytes,
    )
