"""Detached signatures over bytes with the broker's key (an archive's manifest). Pure.

RSA keys sign with PKCS#1 v1.5 and SHA-256, EC keys with deterministic ECDSA
(RFC 6979) and SHA-256: the same bytes signed again give the same signature, so an
archive exported again is the same file. Verification takes the certificate the
archive carries and, when given, checks it against the trust store or a pinned
certificate: an archive re-signed with another key is refused.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from broker.trust.certs import KeyMaterial, fingerprint, subject_text
from broker.trust.store import TrustStore

RSA = "rsa-pkcs1v15-sha256"
ECDSA = "ecdsa-sha256-rfc6979"


def algorithm_of(material: KeyMaterial) -> str:
    return RSA if isinstance(material.key, rsa.RSAPrivateKey) else ECDSA


def sign_detached(material: KeyMaterial, data: bytes) -> bytes:
    """The signature of `data` with the broker's key (algorithm: `algorithm_of`)."""
    key = material.key
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))


def certificate_pem(material: KeyMaterial) -> str:
    return material.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def verify_detached(
    certificate: str,
    algorithm: str,
    data: bytes,
    signature: bytes,
    *,
    store: TrustStore | None = None,
    pinned: x509.Certificate | None = None,
    at: datetime | None = None,
) -> str:
    """Why `signature` over `data` cannot be trusted, or "" when it can: it must verify
    with `certificate` (PEM), and that certificate must chain to `store` at `at` (its
    signing time is not known: the caller passes one inside its validity) or be
    `pinned`, when either is given."""
    try:
        cert = x509.load_pem_x509_certificate(certificate.encode("ascii"))
    except ValueError as exc:
        return f"the signing certificate is unreadable: {exc}"
    key = cert.public_key()
    try:
        if algorithm == RSA and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif algorithm == ECDSA and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return f"unknown signature algorithm {algorithm!r} for this certificate"
    except InvalidSignature:
        return "the signature does not match the manifest"
    if pinned is not None and fingerprint(pinned) != fingerprint(cert) and store is None:
        return f"signed by {subject_text(cert)}, not by the broker's certificate"
    if store is not None and (pinned is None or fingerprint(pinned) != fingerprint(cert)):
        when = min(
            max(at or cert.not_valid_before_utc, cert.not_valid_before_utc),
            cert.not_valid_after_utc,
        )
        # an archive outlives its certificate's CRLs: a revocation the store cannot
        # check is not held against it (a CRL that lists the certificate still is)
        result = store.verify(cert, at=when, enforce_revocation=False)
        if not result.ok:
            return f"the signing certificate {subject_text(cert)} is not trusted: {result.reason}"
    return ""
