"""Dead letters: the list, one with its problems and their locations, and replay."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from adapters.http_api.console.keys import DEAD_LETTERS
from adapters.http_api.console.render import render
from adapters.http_api.keys import RUNTIME
from broker.core.errors import NotFound
from broker.service.replay import ReplayResult, replay_live
from broker.views.dead_letters import DeadLetter, select

log = structlog.get_logger(__name__)

STAGES = ("accept", "pipeline", "upstream")
ACTOR = "console:admin"  # who replayed, as the audit trail records it (README: Dead letters)


def location_text(problem: dict[str, Any]) -> str:
    """`line:column path` of a problem, as `docbroker rejected show` prints it."""
    where = problem.get("location") or {}
    if not isinstance(where, dict):
        return str(where)
    at = ":".join(str(where[k]) for k in ("line", "column") if where.get(k))
    return f"{at} {where.get('path') or ''}".strip()


async def dead_letter_list(request: web.Request) -> web.StreamResponse:
    runtime = request.config_dict[RUNTIME]
    letters = await request.app[DEAD_LETTERS].letters(runtime.log, runtime.topics)
    stage = request.query.get("stage") or None
    filters = {
        "stage": stage if stage in STAGES else None,
        "sender": request.query.get("sender", "").strip() or None,
        "code": request.query.get("code", "").strip() or None,
    }
    found = select(letters, **filters, limit=200)
    context = {
        "section": "dead_letters",
        "letters": found,
        "total": len(letters),
        "filters": {k: v or "" for k, v in filters.items()},
        "stages": STAGES,
    }
    return render(request, "dead_letters.html", context)


async def _letter(request: web.Request) -> DeadLetter:
    runtime = request.config_dict[RUNTIME]
    message_id = request.match_info["message_id"]
    letter = await request.app[DEAD_LETTERS].find(runtime.log, runtime.topics, message_id)
    if letter is None:
        raise NotFound(f"no dead letter with message id {message_id}")
    return letter


def _page(
    request: web.Request, letter: DeadLetter, result: ReplayResult | None = None
) -> web.Response:
    context = {
        "section": "dead_letters",
        "letter": letter,
        "problems": [{**p, "where": location_text(p)} for p in letter.problems],
        "result": result,
        "result_problems": [
            {**p, "where": location_text(p)} for p in (result.problems if result else ())
        ],
    }
    return render(request, "dead_letter.html", context)


async def dead_letter_page(request: web.Request) -> web.StreamResponse:
    return _page(request, await _letter(request))


async def replay(request: web.Request) -> web.StreamResponse:
    """POST (the guard checked the CSRF token): replay the dead letter, or with
    `dry_run` say what a replay would do; idempotent and audited by the pipeline
    (broker.service.replay). The page shows the outcome."""
    letter = await _letter(request)
    form = await request.post()
    dry_run = form.get("dry_run") == "1"
    (result,) = await replay_live(
        request.config_dict[RUNTIME], [letter.message_id], dry_run=dry_run, actor=ACTOR
    )
    log.info(
        "console: dead letter replay",
        message_id=letter.message_id,
        dry_run=dry_run,
        outcome=result.outcome,
    )
    if not dry_run:  # show it as it now is (marked replayed, when it was)
        letter = await _letter(request)
    return _page(request, letter, result)
