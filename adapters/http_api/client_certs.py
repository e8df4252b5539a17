"""Client-certificate chain checks, off the event loop and remembered a short while.

TLS hands over the certificate of an HTTPS connection; docbroker checks its chain
against the trust store, its revocation included (CRLs, OCSP when enabled; one that
cannot be checked is refused unless trust.unchecked_revocation accepts it, as for a
required signature), for every /v1 request, and on a keep-alive connection every
request presents the same certificate. The check (path building, signatures, CRL
signatures, maybe an OCSP request) takes a millisecond or more: it runs in a worker
thread, once per certificate per VERDICT_SECONDS (never past the chain's expiry, nor
past a change of the CRLs), and requests that arrive while it runs share it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from cryptography import x509

from broker.trust.store import ChainResult, TrustStore

VERDICT_SECONDS = 30.0  # how long a verdict stands (unless the CRLs change meanwhile)
REMEMBERED = 4096  # certificates remembered at most (the least recently seen go first)


class ChainVerdicts:
    """The trust store's verdict on each client certificate, per DER bytes."""

    def __init__(
        self,
        store: TrustStore,
        now: Callable[[], datetime],
        *,
        seconds: float = VERDICT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self._now, self.seconds, self._clock = store, now, seconds, clock
        self._known: OrderedDict[bytes, tuple[float, asyncio.Future[ChainResult]]] = OrderedDict()
        self._generation = store.crl_source.generation  # the CRLs the verdicts are of

    async def check(self, der: bytes, cert: x509.Certificate) -> ChainResult:
        """Whether `cert` (whose bytes are `der`) chains to a trusted CA now."""
        at = self._clock()
        if self.store.crl_source.generation != self._generation:  # a CRL was read again
            self._generation = self.store.crl_source.generation
            self._known.clear()
        known = self._known.get(der)
        if known is not None and known[0] > at:
            self._known.move_to_end(der)
            return await asyncio.shield(known[1])
        checking = asyncio.ensure_future(asyncio.to_thread(self.store.verify, cert, at=self._now()))
        self._remember(der, at + self.seconds, checking)
        try:
            result = await asyncio.shield(checking)
        except Exception:
            if self._known.get(der, (0, None))[1] is checking:
                del self._known[der]
            raise
        if result.ok and result.chain:  # an accepted chain stands no longer than it is valid
            left = min(c.not_valid_after_utc for c in result.chain) - self._now()
            self._remember(der, min(at + self.seconds, at + left.total_seconds()), checking)
        return result

    def _remember(self, der: bytes, until: float, verdict: asyncio.Future[ChainResult]) -> None:
        self._known[der] = (until, verdict)
        self._known.move_to_end(der)
        while len(self._known) > REMEMBERED:
            self._known.popitem(last=False)
