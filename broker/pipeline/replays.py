"""Replays of dead letters, as the pipeline takes them. Pure.

`docbroker rejected replay` (or the console) appends a *replay request* to
`inbound`: a record marked `replay-of`, carrying the dead letter's bytes and the
headers what it becomes needs. The pipeline, the only writer of the audit trail,
turns it in one transaction into
  - what the dead letter goes again as: for a national-axis refusal (stage
    `upstream`) the upstream record the axis sender sends again; for a refused
    submission (stage `accept` or `pipeline`) a fresh submission on `inbound`,
    which the pipeline then checks from scratch like any other;
  - the REPLAYED event (actor: who asked), and a marker on `rejected` saying that
    this dead letter was replayed, as which message;
  - the dedup entry (`@replay`, the dead letter's key), so that a dead letter is
    replayed once, however often it is asked.
"""

from __future__ import annotations

from collections.abc import Sequence

from broker.core.events import Event, EventType
from broker.core.logrecords import NewRecord, Record
from broker.core.records import H, make_headers
from broker.core.topics import Topics
from broker.pipeline.batch import BatchContext, Outcome
from broker.pipeline.intake import AUTHENTICATED, IDEMPOTENCY_KEY

REPLAY_OF = "replay-of"  # header of a replay request: the dead letter's message id
REPLAY_KEY = H.REPLAY_KEY  # which dead letter: `<message id>@<when it was dead-lettered>`
REPLAY_STAGE = "replay-stage"  # the dead letter's stage: accept | pipeline | upstream
REPLAY_ACTOR = H.REPLAY_ACTOR  # who asked: cli:<user>, console:<admin>
REPLAYED_AS = H.REPLAYED_AS  # header of the marker on `rejected`: the replay's message id
REPLAYED_FROM = "replayed-from"  # header of a fresh submission: the dead letter it replays
REPLAY_DEDUP_SENDER = "@replay"  # dedup key (REPLAY_DEDUP_SENDER, replay key): once
STAGE_UPSTREAM = "upstream"

# What an upstream record carries that the axis sender and its receipts read.
UPSTREAM_HEADERS = (
    H.DOCUMENT_ID,
    H.SENDER,
    H.RECIPIENT,
    "requested-as",
    H.TRACE_ID,
    H.RECEIVED_AT,
    H.KIND,
    H.SHA256,
    "code",
    "promulgation-date",
    "status-code",
    H.UPSTREAM_TO,
    H.UPSTREAM_REQUESTED,
)
# What a submission carries that its checks read again (the caller it came from).
SUBMISSION_HEADERS = (
    H.DOCUMENT_ID,
    H.SENDER,
    H.TRACE_ID,
    H.KIND,
    H.SHA256,
    H.SOURCE,
    AUTHENTICATED,
    IDEMPOTENCY_KEY,
)


def letter_key(message_id: str, at_ms: int) -> str:
    """Which dead letter: an envelope the axis refuses again after a replay is a new
    dead letter under the same message id, and may be replayed again."""
    return f"{message_id}@{at_ms}"


def is_replay(record: Record) -> bool:
    return bool(record.header_str(REPLAY_OF))


def replay_dedup_key(record: Record) -> tuple[str, str]:
    return (REPLAY_DEDUP_SENDER, record.header_str(REPLAY_KEY))


def replay_request(
    topics: Topics,
    letter: Record,
    *,
    replay_id: str,
    key: str,
    actor: str,
    at_ms: int,
    found: dict[str, str | None] | None = None,
) -> NewRecord:
    """The request to replay the dead letter `letter` (a `rejected` record) as the
    message `replay_id`; `found` adds headers read from its bytes (sender, document
    id and kind of a package refused at the door, whose letter does not name them)."""
    stage = letter.header_str(H.STAGE) or "pipeline"
    names = UPSTREAM_HEADERS if stage == STAGE_UPSTREAM else SUBMISSION_HEADERS
    carried = {n: letter.header_str(n) or None for n in names}
    carried.update({k: v for k, v in (found or {}).items() if v and not carried.get(k)})
    sender = carried.get(H.SENDER) or letter.header_str(H.MESSAGE_ID)
    return NewRecord(
        topic=topics.inbound,
        key=sender.encode(),
        value=letter.value or b"",
        headers=make_headers(
            {
                **carried,
                H.MESSAGE_ID: replay_id,
                H.PRODUCED_AT: at_ms,
                REPLAY_OF: letter.header_str(H.MESSAGE_ID),
                REPLAY_KEY: key,
                REPLAY_STAGE: stage,
                REPLAY_ACTOR: actor,
            }
        ),
    )


def replayed(record: Record, topics: Topics, ctx: BatchContext) -> Outcome:
    """What a replay request turns into (nothing when its dead letter was replayed)."""
    key = replay_dedup_key(record)
    if ctx.seen(*key) is not None:
        return Outcome("duplicate")
    original, replay_id = record.header_str(REPLAY_OF), record.header_str(H.MESSAGE_ID)
    stage = record.header_str(REPLAY_STAGE)
    if stage == STAGE_UPSTREAM:  # as it was: its receipts join the original submission
        again = _again(
            record, topics.upstream, UPSTREAM_HEADERS, original, {H.PRODUCED_AT: ctx.now_ms}
        )
    else:  # a new submission, received now, checked from scratch
        extra = {H.RECEIVED_AT: ctx.now_ms, H.PRODUCED_AT: ctx.now_ms, REPLAYED_FROM: original}
        again = _again(record, topics.inbound, SUBMISSION_HEADERS, replay_id, extra)
    actor = record.header_str(REPLAY_ACTOR) or "unknown"
    event = Event(
        EventType.REPLAYED,
        ctx.now_ms,
        original,
        record.header_str(H.DOCUMENT_ID),
        record.header_str(H.SENDER),
        record.header_str(H.TRACE_ID),
        actor=actor,
        sha256=record.header_str(H.SHA256) or None,
        details={
            "original_message_id": original,
            "replayed_as": replay_id,
            "stage": stage,
            "to": "upstream" if stage == STAGE_UPSTREAM else "inbound",
        },
    )
    marker = NewRecord(
        topics.rejected,
        b"",
        headers=make_headers(
            {
                H.MESSAGE_ID: original,
                H.SENDER: record.header_str(H.SENDER) or None,
                H.PRODUCED_AT: ctx.now_ms,
                REPLAYED_AS: replay_id,
                REPLAY_KEY: key[1],
                REPLAY_ACTOR: actor,
            }
        ),
        key=(record.header_str(H.SENDER) or original).encode(),
    )
    return Outcome("replayed", (again, marker), (event,), dedup=(key,))


def _again(
    record: Record,
    topic: str,
    names: Sequence[str],
    message_id: str,
    extra: dict[str, str | int | None],
) -> NewRecord:
    """The dead letter's bytes with the headers `names` of the request, as `message_id`."""
    carried = {n: record.header_str(n) or None for n in names}
    headers = make_headers({H.MESSAGE_ID: message_id, **carried, **extra})
    return NewRecord(topic, record.value or b"", key=record.key, headers=headers)
