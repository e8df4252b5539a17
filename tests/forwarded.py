"""What a recipient receives: the sender's package, one more TraceHeader, the broker's
signature. Checks shared by the API and end-to-end tests."""

from __future__ import annotations

import dataclasses
import hashlib

from broker.clock import utc_now
from broker.edxml.validator import EnvelopeValidator
from broker.trust.store import TrustStore
from broker.trust.xmldsig import Role, SignatureVerifier
from tests import pki

VALIDATOR = EnvelopeValidator(clock=utc_now)


def assert_forwarded(original: bytes, received: bytes, *, sha256: str | None = None) -> None:
    """`received` is `original` stamped for this hop and signed by the test broker."""
    if sha256 is not None:
        assert hashlib.sha256(received).hexdigest() == sha256
    sent, got = VALIDATOR.check(original), VALIDATOR.check(received)
    assert got.trace[:-1] == sent.trace
    assert got.trace[-1].organ_id == pki.BROKER_ID
    unchanged = {"trace": sent.trace, "signatures": ()}
    assert dataclasses.replace(got, **unchanged) == dataclasses.replace(sent, **unchanged)
    results = SignatureVerifier(TrustStore([pki.ca().certificate], crls=[pki.crl()])).verify_all(
        received, at=utc_now()
    )
    broker = [r for r in results if r.role is Role.BROKER]
    assert len(broker) == 1 and broker[0].valid, broker
    assert broker[0].signer_uid == pki.BROKER_ID
