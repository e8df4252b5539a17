"""Whether a certificate is revoked, from its issuer's CRLs at a time. Pure: the CRLs
(read, and read again when their files change, by broker.keys.crlfiles) and the time
come in as values; an OCSP answer (broker.trust.ocsp) gives the same verdicts.

- revoked: a CRL signed by the issuer lists the serial number (a CRL past its
  nextUpdate too: a revocation does not expire);
- good: a CRL signed by the issuer and current at that time does not list it;
- unchecked: no CRL of the issuer, or only ones past their nextUpdate (a stale CRL
  says nothing of what was revoked since): `trust.unchecked_revocation` decides;
- refused: CRLs name the issuer but none is signed by its key (forged, or the CA's key
  changed and its CRL did not): fail closed whatever the policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography import x509

from broker.trust.certs import subject_text

State = Literal["good", "revoked", "unchecked", "refused"]
SignedBy = Callable[[x509.CertificateRevocationList, x509.Certificate], bool]


@dataclass(frozen=True, slots=True)
class Revocation:
    """A revocation verdict: `reason` says why when not good; `source` what said so
    ("crl", "ocsp"; several joined by "+" for a chain)."""

    state: State
    reason: str = ""
    source: str = ""


def signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """Whether `issuer`'s key signed `crl`."""
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):  # a key type CRLs cannot be signed with
        return False


def crl_status(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    when: datetime,
    *,
    signed: SignedBy = signed_by,
) -> Revocation:
    """`cert`'s revocation status at `when` per the CRLs of its `issuer` among `crls`."""
    named = [c for c in crls if c.issuer == issuer.subject]
    if not named:
        return Revocation("unchecked", f"no CRL of {subject_text(issuer)} is configured")
    valid = [c for c in named if signed(c, issuer)]
    if not valid:
        return Revocation("refused", f"the CRL of {subject_text(issuer)} has an invalid signature")
    for crl in valid:
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            return Revocation(
                "revoked",
                f"certificate {subject_text(cert)} was revoked on "
                f"{entry.revocation_date_utc:%Y-%m-%d}",
                "crl",
            )
    if any(c.next_update_utc is None or c.next_update_utc >= when for c in valid):
        return Revocation("good", "", "crl")
    latest = max(c.next_update_utc for c in valid if c.next_update_utc is not None)
    return Revocation(
        "unchecked",
        f"the CRL of {subject_text(issuer)} is out of date (its nextUpdate was "
        f"{latest:%Y-%m-%d %H:%M} UTC)",
    )


def chain_status(links: Sequence[Revocation]) -> Revocation:
    """A chain's status from its links' (each certificate but the root's): the first
    revoked or refused one, else unchecked when any is (with every reason), else good."""
    for link in links:
        if link.state in ("revoked", "refused"):
            return link
    unchecked = [link.reason for link in links if link.state == "unchecked"]
    if unchecked:
        return Revocation("unchecked", "; ".join(unchecked))
    sources = dict.fromkeys(link.source for link in links if link.source)
    return Revocation("good", "", "+".join(sources))


def unchecked_refusal(reason: str) -> str:
    """What a refusal for an unchecked revocation says: why, and what to configure."""
    return (
        f"revocation could not be checked ({reason}): configure the issuer's CRL "
        '(trust.crl_files) or OCSP (trust.ocsp), or set trust.unchecked_revocation = "accept"'
    )
