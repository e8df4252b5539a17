"""A development PKI: a CA, the broker's certificate, agency certificates.

For `docbroker keys init` and the test suite. Production keys come from the
Government Cipher Committee's CA (Ban Cơ yếu Chính phủ) and are loaded from files.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from broker.trust.certs import KeyMaterial, PrivateKey


def new_key(kind: str = "rsa") -> PrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str, *, org: str = "", uid: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    if uid:
        attrs.append(x509.NameAttribute(NameOID.USER_ID, uid))
    return x509.Name(attrs)


@dataclass(frozen=True)
class Authority:
    key: PrivateKey
    certificate: x509.Certificate


def make_ca(
    cn: str = "docbroker development CA",
    *,
    days: int = 3650,
    not_before: datetime | None = None,
    key: PrivateKey | None = None,
    issuer: Authority | None = None,
) -> Authority:
    """A CA certificate (self-signed, or an intermediate when `issuer` is given)."""
    key = key or new_key()
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    name = _name(cn, org="docbroker")
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.certificate.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    signer = issuer.key if issuer else key
    return Authority(key, builder.sign(signer, hashes.SHA256()))


def issue(
    authority: Authority,
    cn: str,
    *,
    uid: str | None = None,
    org: str = "",
    days: int = 825,
    not_before: datetime | None = None,
    key: PrivateKey | None = None,
    key_kind: str = "rsa",
    hosts: Sequence[str] = (),
    ocsp_url: str = "",
    ocsp_signing: bool = False,
) -> KeyMaterial:
    """An end-entity certificate: for signing and TLS clients (`uid` carries an agency
    code), or, with `hosts`, for a TLS server reached by those names or addresses, or,
    with `ocsp_signing`, for an OCSP responder answering for `authority`. `ocsp_url`:
    the responder it names (Authority Information Access)."""
    key = key or new_key(key_kind)
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if hosts else ExtendedKeyUsageOID.CLIENT_AUTH
    if ocsp_signing:
        usage = ExtendedKeyUsageOID.OCSP_SIGNING
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org=org, uid=uid))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=not hosts,
                key_encipherment=bool(hosts),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
    )
    builder = _with_names(builder, hosts, ocsp_url)
    return KeyMaterial(key, builder.sign(authority.key, hashes.SHA256()))


def _with_names(
    builder: x509.CertificateBuilder, hosts: Sequence[str], ocsp_url: str
) -> x509.CertificateBuilder:
    """The server's names (subjectAltName) and the OCSP responder's URL (AIA), if any."""
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False
        )
    if ocsp_url:
        ocsp = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([ocsp]), critical=False)
    return builder


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def revoke(
    authority: Authority,
    certs: list[x509.Certificate],
    *,
    days: int = 7,
    last_update: datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL from `authority` revoking `certs`."""
    now = last_update or datetime.now(UTC) - timedelta(minutes=1)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.certificate.subject)
        .last_update(now)
        .next_update(now + timedelta(days=days))
    )
    for cert in certs:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now)
            .build()
        )
    return builder.sign(authority.key, hashes.SHA256())


def empty_crl(authority: Authority) -> x509.CertificateRevocationList:
    """A CRL revoking nothing, current until the CA expires (the development CA's)."""
    left = authority.certificate.not_valid_after_utc - datetime.now(UTC)
    return revoke(authority, [], days=max(left.days, 1))


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def cert_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
