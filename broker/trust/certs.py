"""Keys and certificates from their bytes (PEM or PKCS#12), and facts about
certificates. Pure: reading the files is broker.keys.pem.

Keys are loaded once at start: parsing an RSA key costs ~29 ms, using a loaded
one ~0.5 ms per signature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from broker.core.errors import ConfigError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class KeyMaterial:
    """A private key with its certificate and the chain up to (not including) a root."""

    key: PrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def algorithm(self) -> str:
        """The XML-DSig signature method this key signs with."""
        return "ecdsa-sha256" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "rsa-sha256"


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex (how bindings name certificates)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def subject_text(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()
    except ValueError:
        return "<unreadable subject>"


def subject_uid(cert: x509.Certificate) -> str | None:
    """The subject's UID attribute: docbroker's certificates carry the agency code there."""
    try:
        attrs = cert.subject.get_attributes_for_oid(NameOID.USER_ID)
    except ValueError:
        return None
    return str(attrs[0].value) if attrs else None


def seconds_left(cert: x509.Certificate, now: datetime) -> float:
    return (cert.not_valid_after_utc - now).total_seconds()


def parse_certificates(data: bytes, where: str) -> list[x509.Certificate]:
    """Every certificate in PEM bytes (or one DER certificate)."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise ConfigError(f"{where}: not a certificate file: {exc}") from None


def parse_crl(data: bytes, where: str) -> x509.CertificateRevocationList:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise ConfigError(f"{where}: not a CRL: {exc}") from None


def parse_pkcs12(data: bytes, passphrase: bytes | None, where: str) -> KeyMaterial:
    """A key, its certificate and chain from one PKCS#12 (.p12/.pfx) file's bytes."""
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, passphrase)
    except ValueError as exc:
        raise ConfigError(f"{where}: cannot open the PKCS#12 file: {exc}") from None
    if key is None or cert is None:
        raise ConfigError(f"{where}: the PKCS#12 file needs a key and a certificate")
    return _checked(key, cert, tuple(extra or ()), where)


def parse_pem_key(key_data: bytes, passphrase: bytes | None, where: str) -> object:
    """A PEM private key (checked as a signing key by `key_material`)."""
    try:
        key = serialization.load_pem_private_key(key_data, passphrase)
    except TypeError:
        raise ConfigError(
            f"{where}: the key is encrypted: give its passphrase (keys.passphrase_file "
            "or the variable named by keys.passphrase_env)"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{where}: cannot load the private key: {exc}") from None
    return key


def key_material(key: object, certificates: Sequence[x509.Certificate], where: str) -> KeyMaterial:
    """A private key with its certificate (the first) and chain (the rest)."""
    return _checked(key, certificates[0], tuple(certificates[1:]), where)


def _checked(
    key: object, cert: x509.Certificate, chain: Sequence[x509.Certificate], where: str
) -> KeyMaterial:
    if isinstance(key, ed25519.Ed25519PrivateKey) or not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    ):
        raise ConfigError(f"{where}: only RSA and ECDSA keys sign edXML envelopes")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if key.public_key().public_bytes(enc, pub) != cert.public_key().public_bytes(enc, pub):
        raise ConfigError(f"{where}: the certificate does not belong to this private key")
    return KeyMaterial(key, cert, tuple(chain))
