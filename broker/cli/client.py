"""A small synchronous client of docbroker's native API (used by the CLI).

Problem answers become `ApiProblem` errors carrying the server's problem codes;
4xx maps to exit status 1 (refused), anything else to 2.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from broker.core.errors import EXIT_REFUSED, EXIT_USAGE, DocbrokerError, ProblemsError
from broker.core.problems import PROBLEM_TYPES, Problem


class ApiProblem(ProblemsError):
    """The server refused or failed a request."""

    def __init__(self, status: int, body: dict[str, Any], retry_after: float | None = None) -> None:
        self.status = status
        self.body = body
        self.retry_after = retry_after  # seconds, from the Retry-After header
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


def tls_context(
    cafile: str | None = None, certfile: str | None = None, keyfile: str | None = None
) -> ssl.SSLContext:
    """A client TLS context: the server checked against `cafile` (or the system's CAs),
    and a client certificate presented when given (mTLS)."""
    context = ssl.create_default_context(cafile=cafile)
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    return context


@dataclass
class DocbrokerClient:
    base_url: str
    timeout: float = 60.0
    headers: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    ssl_context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        scheme = urllib.parse.urlsplit(self.base_url).scheme
        if scheme not in ("http", "https"):
            raise Unreachable(f"docbroker's URL must be http or https, not {self.base_url!r}")
        if self.token:
            self.headers = {**self.headers, "Authorization": f"Bearer {self.token}"}

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        query: dict[str, Any] | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        url = self.base_url.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        req = urllib.request.Request(  # noqa: S310 - scheme checked in __post_init__
            url, data=body, method=method, headers={**self.headers, **(headers or {})}
        )
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(  # noqa: S310
                req, timeout=timeout or self.timeout, context=self.ssl_context
            ) as resp:
                return Response(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"code": "internal-error", "detail": raw.decode("utf-8", "replace")}
            after = exc.headers.get("Retry-After") if exc.headers else None
            retry = float(after) if after and after.isdigit() else None
            raise ApiProblem(exc.code, payload, retry) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Unreachable(f"cannot reach docbroker at {self.base_url}: {exc}") from None

    def submit(self, data: bytes, *, idempotency_key: str | None = None) -> dict[str, Any]:
        return self._request(
            "POST",
            "/v1/envelopes",
            body=data,
            content_type="application/xml",
            headers={"Idempotency-Key": idempotency_key} if idempotency_key else None,
        ).json()

    def agencies(self) -> dict[str, Any]:
        return self._request("GET", "/v1/agencies").json()

    def document(self, document_id: str) -> dict[str, Any]:
        """The delivery state of a document this agency sent, per recipient."""
        return self._request("GET", f"/v1/documents/{_segment(document_id)}").json()

    def find_documents(self, **query: str) -> dict[str, Any]:
        """A page of GET /v1/documents (code, document_id, sender, recipient, from, to,
        status, kind, limit, cursor): what this agency sent or received."""
        return self._request("GET", "/v1/documents", query=query).json()

    def trace(self, document_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/documents/{_segment(document_id)}/trace").json()

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
        path = f"/v1/mailboxes/{_segment(agency)}/envelopes"
        return self._request("GET", path, query=query, timeout=wait + self.timeout).json()

    def fetch(self, agency: str, message_id: str) -> Response:
        path = f"/v1/mailboxes/{_segment(agency)}/envelopes/{_segment(message_id)}"
        return self._request("GET", path)

    def ack(self, agency: str, message_id: str) -> dict[str, Any]:
        path = f"/v1/mailboxes/{_segment(agency)}/envelopes/{_segment(message_id)}/ack"
        return self._request("POST", path, body=b"").json()


def _segment(value: str) -> str:
    """One path segment: a DocumentId has slashes and commas."""
    return urllib.parse.quote(value, safe="")
