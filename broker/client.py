"""A small synchronous client of docbroker's native API (used by the CLI).

Problem answers become `ApiProblem` errors carrying the server's problem codes;
4xx maps to exit status 1 (refused), anything else to 2.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from broker.errors import EXIT_REFUSED, EXIT_USAGE, DocbrokerError, ProblemsError
from broker.problems import PROBLEM_TYPES, Problem


class ApiProblem(ProblemsError):
    """The server refused or failed a request."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        raw = body.get("problems") or [
            {"code": body.get("code", "internal-error"), "message": body.get("detail", "")}
        ]
        super().__init__(
            [
                Problem.from_dict(p)
                if p.get("code") in PROBLEM_TYPES
                else Problem("internal-error", f"{p.get('code')}: {p.get('message')}")
                for p in raw
            ]
        )

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return EXIT_REFUSED if 400 <= self.status < 500 else EXIT_USAGE


class Unreachable(DocbrokerError):
    code = "backend-unavailable"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class DocbrokerClient:
    base_url: str
    timeout: float = 60.0
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        scheme = urllib.parse.urlsplit(self.base_url).scheme
        if scheme not in ("http", "https"):
            raise Unreachable(f"docbroker's URL must be http or https, not {self.base_url!r}")

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        query: dict[str, Any] | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> Response:
        url = self.base_url.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        req = urllib.request.Request(url, data=body, method=method, headers=dict(self.headers))  # noqa: S310 - scheme checked in __post_init__
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:  # noqa: S310
                return Response(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"code": "internal-error", "detail": raw.decode("utf-8", "replace")}
            raise ApiProblem(exc.code, payload) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Unreachable(f"cannot reach docbroker at {self.base_url}: {exc}") from None

    def submit(self, data: bytes) -> dict[str, Any]:
        return self._request(
            "POST", "/v1/envelopes", body=data, content_type="application/xml"
        ).json()

    def inbox(
        self,
        agency: str,
        *,
        after: int = 0,
        limit: int = 100,
        wait: float = 0,
        include_acked: bool = False,
    ) -> dict[str, Any]:
        query = {
            "after": after,
            "limit": limit,
            "wait": wait or None,
            "state": "all" if include_acked else None,
        }
        path = f"/v1/mailboxes/{urllib.parse.quote(agency)}/envelopes"
        return self._request("GET", path, query=query, timeout=wait + self.timeout).json()

    def fetch(self, agency: str, message_id: str) -> Response:
        path = (
            f"/v1/mailboxes/{urllib.parse.quote(agency)}/envelopes/{urllib.parse.quote(message_id)}"
        )
        return self._request("GET", path)

    def ack(self, agency: str, message_id: str) -> dict[str, Any]:
        path = (
            f"/v1/mailboxes/{urllib.parse.quote(agency)}/envelopes/"
            f"{urllib.parse.quote(message_id)}/ack"
        )
        return self._request("POST", path, body=b"").json()
