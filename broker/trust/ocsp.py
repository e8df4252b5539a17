"""OCSP (RFC 6960): the request for one certificate, and the verdict of an answer. Pure:
the HTTP exchange and the cache are broker.keys.ocsp_client's.

An answer is believed only when it is signed by the certificate's issuer, or by a
responder certificate that issuer issued for the purpose (extended key usage
OCSPSigning, valid at the time), names this certificate, echoes the request's nonce
when it carries one (responders may leave it out), and is current: thisUpdate not in
the future (beyond CLOCK_SKEW), nextUpdate not past (without a nextUpdate, thisUpdate
no older than the maximum age). Anything else leaves the revocation unchecked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ParamSpec

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from broker.trust.certs import subject_text
from broker.trust.revocation import Revocation

CLOCK_SKEW = timedelta(minutes=5)
P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class OcspVerdict:
    """An answer's verdict, and until when it may be reused (None: not at all)."""

    revocation: Revocation
    until: datetime | None = None


def responder_url(cert: x509.Certificate) -> str | None:
    """The http(s) OCSP responder the certificate's Authority Information Access names."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    for desc in aia:
        where = desc.access_location
        if (
            desc.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(where, x509.UniformResourceIdentifier)
            and where.value.lower().startswith(("http://", "https://"))
        ):
            return where.value
    return None


def request_der(cert: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None) -> bytes:
    """A DER OCSPRequest for `cert` (CertID hashed with SHA-1, as responders expect)."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def unchecked(reason: str) -> OcspVerdict:
    return OcspVerdict(Revocation("unchecked", f"OCSP: {reason}"))


def _unreadable_is_unchecked(fn: Callable[P, OcspVerdict]) -> Callable[P, OcspVerdict]:
    """An answer is input from the network: whatever cannot be read in it (an unknown
    algorithm, a malformed field) leaves the status unchecked, never an exception."""

    @functools.wraps(fn)
    def checked(*args: P.args, **kwargs: P.kwargs) -> OcspVerdict:
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            return unchecked(f"unreadable answer ({exc})")

    return checked


@_unreadable_is_unchecked
def check_response(
    der: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    when: datetime,
    *,
    nonce: bytes | None,
    max_age: timedelta,
) -> OcspVerdict:
    """The verdict of the responder's answer `der` on `cert` at `when`."""
    response = ocsp.load_der_ocsp_response(der)
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return unchecked(f"the responder answered {response.response_status.name.lower()}")
    problem = _signature_problem(response, issuer, when) or _nonce_problem(response, nonce)
    if problem:
        return unchecked(problem)
    single = _about(response, cert, issuer)
    if single is None:
        return unchecked("the answer is not about this certificate")
    this_update, next_update = single.this_update_utc, single.next_update_utc
    if this_update > when + CLOCK_SKEW:
        return unchecked(f"the answer's thisUpdate {this_update:%Y-%m-%d %H:%M} is in the future")
    until = min(next_update, when + max_age) if next_update else this_update + max_age
    if until < when - CLOCK_SKEW:
        return unchecked(f"the answer is out of date (thisUpdate {this_update:%Y-%m-%d %H:%M})")
    status = single.certificate_status
    if status == ocsp.OCSPCertStatus.GOOD:
        return OcspVerdict(Revocation("good", "", "ocsp"), until)
    if status == ocsp.OCSPCertStatus.REVOKED:
        at = single.revocation_time_utc
        on = f" on {at:%Y-%m-%d}" if at else ""
        reason = f"certificate {subject_text(cert)} was revoked{on} (OCSP)"
        return OcspVerdict(Revocation("revoked", reason, "ocsp"), until)
    return OcspVerdict(Revocation("unchecked", "OCSP: the responder does not know the certificate"))


def _about(
    response: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate
) -> ocsp.OCSPSingleResponse | None:
    for single in response.responses:
        algorithm = single.hash_algorithm
        try:
            expected = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm).build()
        except (TypeError, ValueError):  # a hash the CertID may not use
            continue
        if (
            single.serial_number == cert.serial_number
            and single.issuer_key_hash == expected.issuer_key_hash
            and single.issuer_name_hash == expected.issuer_name_hash
        ):
            return single
    return None


def _nonce_problem(response: ocsp.OCSPResponse, nonce: bytes | None) -> str:
    try:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return ""
    return "" if nonce is None or echoed == nonce else "the answer's nonce is not the request's"


def _signature_problem(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, when: datetime
) -> str:
    """Why the answer's signature is not the issuer's or its delegated responder's."""
    if _names(response, issuer):
        signer = issuer
    else:
        delegates = [c for c in response.certificates if _names(response, c)]
        if not delegates:
            return "the answer is signed by neither the issuer nor a responder it names"
        signer = delegates[0]
        problem = _delegate_problem(signer, issuer, when)
        if problem:
            return problem
    if not _verifies(signer, response):
        return f"the answer's signature does not verify with {subject_text(signer)}'s key"
    return ""


def _names(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    """Whether the answer's ResponderID is `cert` (by name or by key hash)."""
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    key_hash = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest  # type: ignore[arg-type]
    return response.responder_key_hash == key_hash


def _delegate_problem(delegate: x509.Certificate, issuer: x509.Certificate, when: datetime) -> str:
    """Why `delegate` may not answer for `issuer`'s certificates at `when`."""
    name = subject_text(delegate)
    try:
        delegate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return f"the responder certificate {name} is not issued by the certificate's issuer"
    try:
        usage = delegate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        usage = None
    if usage is None or ExtendedKeyUsageOID.OCSP_SIGNING not in usage:
        return f"the responder certificate {name} is not for OCSP signing (extended key usage)"
    if not delegate.not_valid_before_utc <= when <= delegate.not_valid_after_utc:
        return f"the responder certificate {name} is not valid now"
    return ""


def _verifies(signer: x509.Certificate, response: ocsp.OCSPResponse) -> bool:
    key, algorithm = signer.public_key(), response.signature_hash_algorithm
    signature, data = response.signature, response.tbs_response_bytes
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(signature, data, ec.ECDSA(algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True
