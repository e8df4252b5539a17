"""One development PKI for the whole test session (key generation is slow)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from cryptography import x509

from broker.keys.devkeys import LOCAL_HOSTS
from broker.keys.devpki import Authority, cert_pem, crl_pem, empty_crl, issue, key_pem, make_ca
from broker.keys.files import SDK_MASTER_KEY, init_sdk_master_key, write_private
from broker.trust.certs import KeyMaterial

BROKER_ID = "000.99.99.H35"


@cache
def ca() -> Authority:
    return make_ca("docbroker test CA")


@cache
def broker() -> KeyMaterial:
    return issue(ca(), "docbroker test", uid=BROKER_ID)


@cache
def agency(code: str, kind: str = "rsa") -> KeyMaterial:
    """An agency's certificate from the test CA, its subject UID the agency code."""
    return issue(ca(), f"agency {code}", uid=code, key_kind=kind)


@cache
def crl() -> x509.CertificateRevocationList:
    """The test CA's CRL, revoking nothing (as `keys init` writes the development CA's)."""
    return empty_crl(ca())


@cache
def other_ca() -> Authority:
    return make_ca("an untrusted CA")


@cache
def expired(code: str) -> KeyMaterial:
    return issue(
        ca(),
        f"expired {code}",
        uid=code,
        days=30,
        not_before=datetime.now(UTC) - timedelta(days=400),
    )


@cache
def tls_server() -> KeyMaterial:
    return issue(ca(), "localhost", hosts=LOCAL_HOSTS)


def install_keys(data_dir: Path) -> Path:
    """Write the test CA and its CRL, the broker's key, the HTTPS server's key and an
    SDK master key where the default settings look."""
    keys = data_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "ca.cert.pem").write_bytes(cert_pem(ca().certificate))
    (keys / "ca.crl.pem").write_bytes(crl_pem(crl()))
    write_private(keys / "broker.key.pem", key_pem(broker().key))
    (keys / "broker.cert.pem").write_bytes(cert_pem(broker().certificate))
    write_private(keys / "tls.key.pem", key_pem(tls_server().key))
    (keys / "tls.cert.pem").write_bytes(cert_pem(tls_server().certificate))
    init_sdk_master_key(keys / SDK_MASTER_KEY)
    return keys
