"""The sender's signature against the sender's policy: a verdict and, maybe, problems."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

from broker.core.problems import Problem
from broker.edxml.model import Envelope
from broker.trust.policy import PolicyBook
from broker.trust.xmldsig import SIGNATURE_INVALID, SignatureResult, SignatureVerifier


@dataclass(frozen=True)
class SenderCheck:
    """valid | invalid | absent | not-bound | ignored; problems when the policy refuses."""

    outcome: str
    policy: str
    result: SignatureResult | None = None
    problems: tuple[Problem, ...] = ()
    signed_data: bytes | None = None  # set when a signature verified: act on this
    stray: tuple[SignatureResult, ...] = ()

    def audit(self) -> dict[str, Any]:
        """What the audit event records about the sender's signature."""
        out: dict[str, Any] = {"outcome": self.outcome, "policy": self.policy}
        if self.result is not None:
            r = self.result
            out.update(
                signer=r.signer,
                signer_fingerprint=r.signer_fingerprint,
                signer_not_after=r.signer_not_after,
                algorithm=r.algorithm,
                digest=r.digest,
                valid=r.valid,
                reason=r.reason,
            )
            if r.revocation:  # checked (good: by what), or not and why: said as it is
                out["revocation"] = r.revocation
                if r.revocation_detail:
                    out["revocation_detail"] = r.revocation_detail
        if self.stray:
            out["stray_signatures"] = [s.path for s in self.stray]
        return out


def check_sender(
    data: bytes,
    envelope: Envelope,
    verifier: SignatureVerifier,
    book: PolicyBook,
    at: datetime,
    *,
    root: etree._Element | None = None,
) -> SenderCheck:
    """`root`: `data` already parsed (unchanged), so that it is not parsed again."""
    sender = envelope.sender_id
    policy = book.for_agency(sender)
    if policy.mode == "ignored":
        return SenderCheck("ignored", policy.mode)
    required = policy.mode == "required"
    # a required signature whose revocation cannot be checked is refused (unless
    # trust.unchecked_revocation accepts it); an optional one records that it was not
    result, stray = verifier.verify_sender(
        data, allow_sha1=policy.allow_sha1, at=at, root=root, enforce_revocation=required
    )
    problems: list[Problem] = []
    if stray and required:
        problems += [Problem(SIGNATURE_INVALID, f"{s.reason}: {s.path}") for s in stray]
    if result is None:
        if required:
            problems.append(
                Problem(
                    "signature-missing", f"{sender}'s policy requires a signature in edXMLHeader"
                )
            )
        return SenderCheck("absent", policy.mode, None, tuple(problems), None, tuple(stray))
    if not result.valid:
        if required:
            problems.append(
                Problem(
                    result.failure or SIGNATURE_INVALID,
                    f"the sender's signature is not valid: {result.reason}",
                )
            )
        return SenderCheck("invalid", policy.mode, result, tuple(problems), None, tuple(stray))
    bound = book.binds(sender, policy, result.signer_fingerprint, result.signer_uid)
    if not bound and required:
        problems.append(
            Problem(
                "signer-mismatch", f"the certificate of {result.signer} is not bound to {sender}"
            )
        )
    return SenderCheck(
        "valid" if bound else "not-bound",
        policy.mode,
        result,
        tuple(problems),
        result.signed_data,
        tuple(stray),
    )
