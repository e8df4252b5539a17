"""`docbroker keys init` / `keys issue`: a development PKI written to the keys folder.

keys/ca.key.pem, ca.cert.pem        the development CA (trusted by default)
keys/ca.crl.pem                      its CRL, empty, current until the CA expires (used
                                     by default: revocation is checked in development too)
keys/broker.key.pem, broker.cert.pem the broker's signing key and certificate
keys/tls.key.pem, tls.cert.pem       the HTTPS server's key and certificate (localhost)
keys/agencies/CODE.{key,cert}.pem, CODE.p12  agency certificates (subject UID = code)
keys/sdk-master.key                  the key SDK systems' secrets are derived from
keys/admin-tokens, admin.token       an admin token's hash, and the token itself (dev only)

Private keys are written with mode 0600. Existing files are kept unless forced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

from broker.core.errors import ConfigError
from broker.keys.devpki import (
    Authority,
    cert_pem,
    crl_pem,
    empty_crl,
    issue,
    key_pem,
    make_ca,
)
from broker.keys.files import (
    ADMIN_TOKEN_COPY,
    ADMIN_TOKENS,
    SDK_MASTER_KEY,
    init_sdk_master_key,
    new_admin_token,
    write_file,
    write_private,
)
from broker.keys.pem import load_certificates
from broker.trust.certs import fingerprint

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
DEV_CRL = "ca.crl.pem"


@dataclass
class Written:
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    agencies: dict[str, str] = field(default_factory=dict)  # code -> certificate fingerprint
    admin_token: str = ""  # a new development admin token (also in keys/admin.token)


def _load_ca(keys_dir: Path) -> Authority:
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key((keys_dir / "ca.key.pem").read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"cannot load the development CA in {keys_dir}: {exc}; run docbroker keys init"
        ) from None
    (cert,) = load_certificates(keys_dir / "ca.cert.pem")[:1]
    return Authority(key, cert)  # type: ignore[arg-type]


def init_dev_keys(
    keys_dir: Path, *, broker_id: str, force: bool = False, agencies: dict[str, str] | None = None
) -> Written:
    """Create what is missing (everything with force)."""
    out = Written()
    ca_files = (keys_dir / "ca.key.pem", keys_dir / "ca.cert.pem")
    if force or not all(p.exists() for p in ca_files):
        ca = make_ca()
        write_file(ca_files[0], key_pem(ca.key), secret=True)
        write_file(ca_files[1], cert_pem(ca.certificate), secret=False)
        out.created += [str(p) for p in ca_files]
        force = True  # everything else must chain to the new CA
    else:
        ca = _load_ca(keys_dir)
        out.kept += [str(p) for p in ca_files]
    crl = keys_dir / DEV_CRL
    if force or not crl.exists():
        write_file(crl, crl_pem(empty_crl(ca)), secret=False)
        out.created.append(str(crl))
    else:
        out.kept.append(str(crl))
    broker_files = (keys_dir / "broker.key.pem", keys_dir / "broker.cert.pem")
    if force or not all(p.exists() for p in broker_files):
        material = issue(ca, "docbroker", uid=broker_id, org="docbroker")
        write_file(broker_files[0], key_pem(material.key), secret=True)
        write_file(broker_files[1], cert_pem(material.certificate), secret=False)
        out.created += [str(p) for p in broker_files]
    else:
        out.kept += [str(p) for p in broker_files]
    tls_files = (keys_dir / "tls.key.pem", keys_dir / "tls.cert.pem")
    if force or not all(p.exists() for p in tls_files):
        material = issue(ca, "localhost", org="docbroker", hosts=LOCAL_HOSTS)
        write_file(tls_files[0], key_pem(material.key), secret=True)
        write_file(tls_files[1], cert_pem(material.certificate, ca.certificate), secret=False)
        out.created += [str(p) for p in tls_files]
    else:
        out.kept += [str(p) for p in tls_files]
    for code, name in (agencies or {}).items():
        out.agencies[code] = issue_agency(keys_dir, code, name, ca=ca, force=force, written=out)
    master = keys_dir / SDK_MASTER_KEY
    (out.created if init_sdk_master_key(master) else out.kept).append(str(master))
    admin = keys_dir / ADMIN_TOKENS
    if not admin.exists():
        out.admin_token = new_admin_token(admin, "created by keys init")
        write_private(keys_dir / ADMIN_TOKEN_COPY, out.admin_token.encode() + b"\n")
        out.created += [str(admin), str(keys_dir / ADMIN_TOKEN_COPY)]
    else:
        out.kept.append(str(admin))
    return out


def issue_agency(
    keys_dir: Path,
    code: str,
    name: str = "",
    *,
    ca: Authority | None = None,
    force: bool = False,
    written: Written | None = None,
) -> str:
    """An agency's key and certificate from the development CA; returns its fingerprint."""
    ca = ca or _load_ca(keys_dir)
    base = keys_dir / "agencies" / code
    cert_path = base.with_name(f"{code}.cert.pem")
    if cert_path.exists() and not force:
        if written is not None:
            written.kept.append(str(cert_path))
        return fingerprint(load_certificates(cert_path)[0])
    material = issue(ca, name or code, uid=code)
    write_file(base.with_name(f"{code}.key.pem"), key_pem(material.key), secret=True)
    write_file(cert_path, cert_pem(material.certificate), secret=False)
    p12 = pkcs12.serialize_key_and_certificates(
        code.encode(), material.key, material.certificate, [ca.certificate], NoEncryption()
    )
    write_file(base.with_name(f"{code}.p12"), p12, secret=True)
    if written is not None:
        written.created += [str(cert_path), str(base.with_name(f"{code}.p12"))]
    return fingerprint(material.certificate)
