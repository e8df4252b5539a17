"""A processor with the test PKI and the example directory, and helpers around it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from functools import cache

from broker.clock import utc_now
from broker.core.logrecords import NewRecord, Record
from broker.core.records import FirstSeen
from broker.core.topics import Topics
from broker.directory.book import Directory
from broker.directory.io import parse_file
from broker.directory.model import AgencyStatus
from broker.edxml.validator import EnvelopeValidator
from broker.pipeline.batch import BatchContext
from broker.pipeline.intake import Submission, inbound_record
from broker.pipeline.processing import InboundProcessor
from broker.trust.context import TrustContext
from broker.trust.policy import PolicyBook, SenderPolicy
from broker.trust.store import TrustStore
from tests import pki
from tests.conftest import EXAMPLE_DIRECTORY_2024

TOPICS = Topics.with_prefix("p.")
VALIDATOR = EnvelopeValidator(clock=utc_now)
NOW = 1_800_000_000_000


@cache
def directory() -> Directory:
    agencies, problems = parse_file(
        EXAMPLE_DIRECTORY_2024.name, EXAMPLE_DIRECTORY_2024.read_text(encoding="utf-8")
    )
    assert not problems, problems
    return Directory.of(agencies)


def with_suspended(code: str) -> Directory:
    agency = directory().find(code)
    assert agency is not None
    return directory().with_agency(replace(agency, status=AgencyStatus.SUSPENDED))


def processor(policy: str = "optional", *, strict: bool = False) -> InboundProcessor:
    """`strict`: the configured default for senders whose record does not say."""
    trust = TrustContext(
        pki.broker(),
        TrustStore([pki.ca().certificate], crls=[pki.crl()]),
        PolicyBook(),
        pki.BROKER_ID,
        30 * 86400.0,
    )
    return InboundProcessor(
        TOPICS, VALIDATOR, trust, default_policy=SenderPolicy(policy), strict_default=strict
    )


def with_strict(code: str, strict: bool | None) -> Directory:
    """The example directory with `code`'s strict policy set."""
    agency = directory().find(code)
    assert agency is not None
    return directory().with_agency(replace(agency, strict=strict))


def first_seen(seen: Mapping[tuple[str, str], int | FirstSeen]) -> dict[tuple[str, str], FirstSeen]:
    """Dedup facts: a bare time is an earlier submission whose bytes are not known."""
    return {
        k: v if isinstance(v, FirstSeen) else FirstSeen(v, "an-earlier-submission")
        for k, v in seen.items()
    }


def ctx(
    seen: Mapping[tuple[str, str], int | FirstSeen] | None = None, d: Directory | None = None
) -> BatchContext:
    known = first_seen(seen or {})
    return BatchContext(d or directory(), lambda s, doc: known.get((s, doc)), NOW)


def consumed(
    data: bytes, *, offset: int = 1, authenticated: str | None = None, message_id: str = "m-1"
) -> Record:
    sub = Submission(data, message_id, "t" * 32, NOW - 5, "http", authenticated)
    rec = inbound_record(sub, VALIDATOR.check(data), TOPICS)
    return as_record(rec, offset)


def as_record(rec: NewRecord, offset: int = 1) -> Record:
    return Record(rec.topic, 0, offset, rec.key, rec.value, rec.headers, NOW - 5)


def on(records: tuple[NewRecord, ...], topic: str) -> list[NewRecord]:
    return [r for r in records if r.topic == topic]


def headers(record: NewRecord) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def problems_of(record: NewRecord) -> list[str]:
    return [p["code"] for p in json.loads(headers(record)["problems"])]
