"""application/problem+json answers (RFC 9457) carrying docbroker's problem codes."""

from __future__ import annotations

import json
from collections.abc import Sequence

from aiohttp import web

from broker.core.problems import Problem, problem_type

PROBLEM_JSON = "application/problem+json"


def problem_response(
    problems: Sequence[Problem],
    *,
    status: int | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """One answer for one or more problems; the first decides type, title and status."""
    first = problems[0]
    ptype = problem_type(first.code)
    body = {
        "type": f"urn:docbroker:problem:{first.code}",
        "title": ptype.title,
        "status": status or ptype.http_status,
        "code": first.code,
        "detail": first.message,
        "problems": [p.to_dict() for p in problems],
    }
    if instance:
        body["instance"] = instance
    return web.Response(
        status=body["status"],
        body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        content_type=PROBLEM_JSON,
        headers=headers,
    )


def simple_problem(code: str, message: str, **kw: object) -> web.Response:
    return problem_response([Problem(code, message)], **kw)  # type: ignore[arg-type]
