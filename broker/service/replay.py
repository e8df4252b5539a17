"""Replaying dead letters (`docbroker rejected replay`, the console's dead-letter page).

The pure part decides what a dead letter would become: `replay_request` builds the
request the pipeline takes (broker.pipeline.replays), and `check_request` runs the
pipeline's own step on the fresh submission it would turn into, against the current
directory and trust, so a dry run says what the pipeline would do. The shell,
`replay`, reads `rejected`, appends the requests to `inbound` and waits a little for
the pipeline's markers. The pipeline alone writes the audit event, and its dedup
entry makes each dead letter replayed once, however often and by whom it is asked.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from broker.clock import now_ms
from broker.core.events import EventType
from broker.core.logrecords import NewRecord, Record
from broker.core.records import H, new_message_id
from broker.core.topics import Topics
from broker.directory.book import Directory
from broker.directory.routing import Route, route_envelope
from broker.edxml.model import Envelope
from broker.log.interface import DurableLog
from broker.pipeline.batch import BatchContext, DedupLookup, Outcome
from broker.pipeline.processing import InboundProcessor
from broker.pipeline.replays import REPLAY_OF, STAGE_UPSTREAM, replay_request, replayed
from broker.runtime import Runtime
from broker.views.audit import read_all
from broker.views.dead_letters import DeadLetter, dead_letter, dead_letters

NOT_FOUND = "not-found"  # no dead letter has this message id
ALREADY = "already-replayed"  # it was replayed (as `replayed_as`): nothing done
STILL_REFUSED = "still-refused"  # checked again now, it would be refused again: not replayed
WOULD = "would-replay"  # dry run: it would pass (to `routes`) or go back to the axis
REPLAYED = "replayed"  # the pipeline replayed it as `replayed_as`
REQUESTED = "requested"  # asked; the pipeline had not taken the request within the wait


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What became (or, in a dry run, would become) of one message id."""

    message_id: str
    outcome: str
    stage: str | None = None
    replayed_as: str | None = None
    routes: tuple[tuple[str, str], ...] = ()  # (recipient, mailbox | upstream | refused:code)
    problems: tuple[dict[str, Any], ...] = ()  # those that still stand
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome not in (NOT_FOUND, STILL_REFUSED)

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "outcome": self.outcome,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "stage": self.stage,
            "replayed_as": self.replayed_as,
            "routes": [{"recipient": r, "route": route} for r, route in self.routes],
            "problems": list(self.problems),
        }

    def line(self) -> str:
        where = ", ".join(f"{r} ({route})" for r, route in self.routes)
        back = "to the national axis" if self.stage == STAGE_UPSTREAM else "through the pipeline"
        problems = "; ".join(f"{p.get('code')}: {p.get('message')}" for p in self.problems)
        text = {
            NOT_FOUND: "not-found: no dead letter has this message id",
            ALREADY: f"already replayed (as {self.replayed_as})",
            STILL_REFUSED: f"would still be refused: {problems}",
            WOULD: f"would pass now, routed to {where}"
            if self.stage != STAGE_UPSTREAM
            else f"would go back to the national axis for {where}",
            REPLAYED: f"replayed as {self.replayed_as}, back {back}",
            REQUESTED: f"replay requested as {self.replayed_as}; the pipeline has not taken "
            "it yet (see `docbroker rejected list`)",
        }[self.outcome]
        return f"{self.message_id}: {text}"


def as_record(new: NewRecord, offset: int = 0) -> Record:
    """A record to append as the pipeline would read it."""
    return Record(new.topic, 0, offset, new.key, new.value, new.headers, now_ms())


def request_for(
    processor: InboundProcessor,
    letter: Record,
    *,
    replay_id: str,
    actor: str,
    at_ms: int,
    directory: Directory | None = None,
) -> NewRecord:
    """The replay request of a dead letter. Its package is read for what its letter
    does not name: sender, document and kind of one refused at the door; the axis
    recipients of an upstream one dead-lettered before its letter kept them (routed
    again against `directory`). CPU."""
    found: dict[str, str | None] = {}
    env = processor.validator.validate(letter.value or b"").envelope
    if env is not None:
        found = {H.SENDER: env.sender_id, H.DOCUMENT_ID: env.subject_document_id}
        found[H.KIND] = str(env.kind)
        older = not letter.header_str(H.UPSTREAM_REQUESTED)
        if letter.header_str(H.STAGE) == STAGE_UPSTREAM and older and directory is not None:
            found.update(upstream_of(env, directory))
    key = dead_letter(letter).key
    return replay_request(
        processor.topics,
        letter,
        replay_id=replay_id,
        key=key,
        actor=actor,
        at_ms=at_ms,
        found=found,
    )


def upstream_of(env: Envelope, directory: Directory) -> dict[str, str | None]:
    """The headers of the upstream record a package would make now: its recipients
    outside the province."""
    up = [d for d in route_envelope(env, directory) if d.route is Route.UPSTREAM]
    if not up:
        return {}
    return {
        H.UPSTREAM_TO: json.dumps([d.agency for d in up]),
        H.UPSTREAM_REQUESTED: json.dumps([d.requested for d in up]),
        H.RECIPIENT: up[0].agency,
        "requested-as": up[0].requested,
    }


def check_request(
    processor: InboundProcessor,
    request: NewRecord,
    directory: Directory,
    at_ms: int,
    seen: DedupLookup | None = None,
) -> ReplayResult:
    """What the pipeline would do now with the submission a replay request turns into:
    its own step, run against `directory` (and the dedup index, when `seen` is given).
    Pure, CPU (parsing, signature, signing)."""
    lookup: DedupLookup = seen or (lambda _s, _d: None)
    ctx = BatchContext(directory, lambda _s, _d: None, at_ms)
    turned = replayed(as_record(request), processor.topics, ctx)
    (fresh,) = [r for r in turned.records if r.topic == processor.topics.inbound]
    outcome = processor.process(as_record(fresh), BatchContext(directory, lookup, at_ms))
    return verdict(as_record(request).header_str(REPLAY_OF), outcome)


def verdict(message_id: str, outcome: Outcome) -> ReplayResult:
    """A dry run's answer from the pipeline's outcome for the fresh submission."""
    routes: list[tuple[str, str]] = []
    problems: list[dict[str, Any]] = []
    for e in outcome.events:
        if e.type is EventType.ROUTED:
            routes.append((e.recipient or "", str(e.details.get("to"))))
        elif e.type is EventType.RECIPIENT_REFUSED:
            routes.append((e.recipient or "", f"refused:{e.details.get('code')}"))
        elif e.type is EventType.REFUSED:
            problems += e.details.get("problems", [])
        elif e.type is EventType.DUPLICATE:
            first = e.details.get("first_message_id")
            problems.append(
                {"code": "already-received", "message": f"the same package was taken in as {first}"}
            )
    if outcome.outcome == "routed":
        return ReplayResult(message_id, WOULD, "pipeline", routes=tuple(routes), dry_run=True)
    return ReplayResult(message_id, STILL_REFUSED, "pipeline", problems=tuple(problems))


def latest(records: Sequence[Record]) -> dict[str, tuple[DeadLetter, Record]]:
    """The newest dead letter of each message id (the axis may refuse a replay again)."""
    out: dict[str, tuple[DeadLetter, Record]] = {}
    for letter, record in dead_letters(records):
        known = out.get(letter.message_id)
        if known is None or letter.at_ms >= known[0].at_ms:
            out[letter.message_id] = (letter, record)
    return out


def upstream_routes(letter: Record) -> tuple[tuple[str, str], ...]:
    """Where an upstream dead letter goes back to: its recipients at the national axis."""
    try:
        to = json.loads(letter.header_str(H.UPSTREAM_REQUESTED) or "[]")
    except ValueError:
        to = []
    return tuple((str(r), STAGE_UPSTREAM) for r in to or [letter.header_str(H.RECIPIENT)])


def upstream_result(message_id: str, request: Record, dry_run: bool) -> ReplayResult:
    """An upstream dead letter goes back to its axis recipients, when they are known."""
    routes = upstream_routes(request)
    if all(r for r, _ in routes):
        return ReplayResult(message_id, WOULD, STAGE_UPSTREAM, routes=routes, dry_run=dry_run)
    problem = {
        "code": "not-replayable",
        "message": "its recipients at the national axis are not known (none of its "
        "recipients is outside the province in the directory now)",
    }
    return ReplayResult(message_id, STILL_REFUSED, STAGE_UPSTREAM, problems=(problem,))


async def replay(
    log: DurableLog,
    topics: Topics,
    directory: Directory,
    processor: InboundProcessor,
    message_ids: Sequence[str],
    *,
    dry_run: bool,
    actor: str,
    seen: DedupLookup | None = None,
    wait: float = 10.0,
) -> list[ReplayResult]:
    """Replay (or, `dry_run`, say what a replay would do for) each message id's newest
    dead letter, as `actor`; `seen`, the live dedup index (the daemon's) for the dry
    run's duplicate check; `wait`, seconds to wait for the pipeline to take the
    requests. A refused submission that the checks would refuse again is not
    replayed (its problems are returned)."""
    letters = latest(await read_all(log, topics.rejected))
    results: dict[str, ReplayResult] = {}
    asked: dict[str, tuple[DeadLetter, NewRecord]] = {}
    for mid in dict.fromkeys(message_ids):
        result, request = await _decide(
            processor, directory, letters.get(mid), mid, dry_run, actor, seen
        )
        results[mid] = result
        if request is not None:
            asked[mid] = (letters[mid][0], request)
    if asked:
        await log.append([request for _, request in asked.values()])
        results.update(await _settled(log, topics, asked, wait))
    return [results[mid] for mid in dict.fromkeys(message_ids)]


async def _decide(
    processor: InboundProcessor,
    directory: Directory,
    found: tuple[DeadLetter, Record] | None,
    message_id: str,
    dry_run: bool,
    actor: str,
    seen: DedupLookup | None,
) -> tuple[ReplayResult, NewRecord | None]:
    """The answer for one id, and the request to append (None: nothing to append)."""
    if found is None:
        return ReplayResult(message_id, NOT_FOUND, dry_run=dry_run), None
    letter, record = found
    if letter.replayed_as:
        return ReplayResult(message_id, ALREADY, letter.stage, letter.replayed_as), None
    at = now_ms()
    request = await asyncio.to_thread(
        request_for,
        processor,
        record,
        replay_id=new_message_id(at),
        actor=actor,
        at_ms=at,
        directory=directory,
    )
    if letter.stage == STAGE_UPSTREAM:
        result = upstream_result(message_id, as_record(request), dry_run)
    else:
        result = await asyncio.to_thread(check_request, processor, request, directory, at, seen)
        result = replace(result, stage=letter.stage, dry_run=dry_run)
    if dry_run or not result.ok:
        return result, None
    return result, request


async def _settled(
    log: DurableLog, topics: Topics, asked: dict[str, tuple[DeadLetter, NewRecord]], wait: float
) -> dict[str, ReplayResult]:
    """Each request's fate once the pipeline marked its dead letter replayed (by it,
    or by another request that came first), or `requested` after `wait` seconds."""
    deadline = time.monotonic() + wait
    out: dict[str, ReplayResult] = {}
    while True:
        marks = {d.key: d for d, _ in dead_letters(await read_all(log, topics.rejected))}
        for mid, (letter, request) in asked.items():
            ours = as_record(request).header_str(H.MESSAGE_ID)
            marked = marks.get(letter.key)
            if marked is not None and marked.replayed_as:
                outcome = REPLAYED if marked.replayed_as == ours else ALREADY
                out[mid] = ReplayResult(mid, outcome, letter.stage, marked.replayed_as)
            else:
                out[mid] = ReplayResult(mid, REQUESTED, letter.stage, ours)
        if all(r.outcome != REQUESTED for r in out.values()) or time.monotonic() > deadline:
            return out
        await asyncio.sleep(0.3)


async def replay_live(
    runtime: Runtime,
    message_ids: Sequence[str],
    *,
    dry_run: bool,
    actor: str,
    wait: float = 10.0,
) -> list[ReplayResult]:
    """`replay` on a running daemon (the console): its log, directory, processor and
    live dedup index (so that a dry run also says whether it would be a duplicate)."""
    return await replay(
        runtime.log,
        runtime.topics,
        runtime.directory.current,
        runtime.processor,
        message_ids,
        dry_run=dry_run,
        actor=actor,
        seen=runtime.dedup.committed,
        wait=wait,
    )
