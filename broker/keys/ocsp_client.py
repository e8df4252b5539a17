"""Asking OCSP responders (trust.ocsp): one HTTP POST per certificate, answers cached.

It runs where verification runs, in worker threads and processes, never on the event
loop; a blocking call with a timeout is what it needs. An answer is kept until its
nextUpdate, at most `max_age`; a responder that did not answer, or an answer that
cannot be believed, is remembered for FAILURE_SECONDS (at most `max_age`), so that a
dead responder costs one timeout per certificate per period, not one per envelope.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from http.client import HTTPException

from cryptography import x509

from broker.trust.certs import fingerprint
from broker.trust.ocsp import check_response, request_der, responder_url
from broker.trust.revocation import Revocation

FAILURE_SECONDS = 60.0
MAX_ANSWER = 1024 * 1024  # bytes: an OCSP answer is a few KB
REMEMBERED = 10_000  # certificates cached at most (the oldest entries go first)

Post = Callable[[str, bytes, float], bytes]


def http_post(url: str, body: bytes, timeout: float) -> bytes:
    """POST an OCSP request (RFC 6960 A.1); the answer's bytes."""
    request = urllib.request.Request(  # noqa: S310 (http(s) only: responder_url)
        url,
        data=body,
        headers={"Content-Type": "application/ocsp-request", "Accept": "application/ocsp-response"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
        return answer.read(MAX_ANSWER + 1)[:MAX_ANSWER]


class OcspClient:
    """broker.trust.store.OcspLookup over HTTP, with a cache."""

    def __init__(
        self, timeout: float, max_age: float, *, post: Post = http_post, nonce: bool = True
    ) -> None:
        self.timeout, self.max_age = timeout, timedelta(seconds=max_age)
        self._post, self._nonce = post, nonce
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[datetime, Revocation]] = {}

    def __call__(
        self, cert: x509.Certificate, issuer: x509.Certificate, when: datetime
    ) -> Revocation:
        url = responder_url(cert)
        if url is None:
            return Revocation("unchecked", "the certificate names no OCSP responder")
        key = fingerprint(cert)
        with self._lock:
            known = self._cache.get(key)
        if known is not None and when < known[0]:
            return known[1]
        nonce = os.urandom(16) if self._nonce else None
        failure_until = when + min(timedelta(seconds=FAILURE_SECONDS), self.max_age)
        try:
            der = self._post(url, request_der(cert, issuer, nonce), self.timeout)
        except (OSError, HTTPException, ValueError) as exc:  # URLError, timeouts are OSErrors
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()
            why = f"OCSP: the responder {url} did not answer ({_why(exc)})"
            verdict = Revocation("unchecked", why)
            self._keep(key, failure_until, verdict)
            return verdict
        answer = check_response(der, cert, issuer, when, nonce=nonce, max_age=self.max_age)
        self._keep(key, answer.until or failure_until, answer.revocation)
        return answer.revocation

    def _keep(self, key: str, until: datetime, verdict: Revocation) -> None:
        with self._lock:
            self._cache.pop(key, None)
            self._cache[key] = (until, verdict)
            while len(self._cache) > REMEMBERED:
                self._cache.pop(next(iter(self._cache)))


def _why(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or exc.__class__.__name__
