"""Trust material loaded once at start: the broker's key, the trust store, policies."""

from __future__ import annotations

from broker.clock import utc_now
from broker.config import Settings
from broker.core.errors import ConfigError
from broker.keys.crlfiles import CrlFiles
from broker.keys.ocsp_client import OcspClient
from broker.keys.pem import load_certificates, load_key_material
from broker.keys.secrets import read_secret
from broker.trust.context import TrustContext
from broker.trust.policy import PolicyBook, SenderPolicy
from broker.trust.store import TrustStore

DEV_HINT = "for development keys run: docbroker keys init"


def _passphrase(settings: Settings) -> bytes | None:
    keys = settings.keys
    return read_secret(
        "the key passphrase (keys.passphrase_file)",
        file=keys.passphrase_file,
        env=keys.passphrase_env,
    )


def trust_store(settings: Settings, *, reporting: bool = True) -> TrustStore:
    """The trusted CAs, their CRLs (kept current: CrlFiles), OCSP when enabled, and the
    policy for what cannot be checked. `reporting`: this process logs the CRL files'
    problems (the daemon; its worker processes read the same files quietly)."""
    trust = settings.trust
    ca_files = settings.trusted_ca_files
    missing = [str(p) for p in ca_files if not p.exists()]
    if missing:
        raise ConfigError(f"trusted CA file(s) missing: {', '.join(missing)}; {DEV_HINT}")
    certificates = [c for path in ca_files for c in load_certificates(path)]
    crl_files = settings.trusted_crl_files
    if not trust.crl_files and not all(p.exists() for p in crl_files):
        raise ConfigError(
            f"the CRL of the CA in {ca_files[0]} is missing: {crl_files[0]}; for the "
            "development CA run: docbroker keys init (it writes it); for another CA, put "
            "its CRL there or name it in trust.crl_files"
        )
    crls = CrlFiles(
        crl_files,
        certificates,
        interval=trust.crl_check_interval,
        reporting=reporting,
        now=utc_now,
    )
    ocsp = OcspClient(trust.ocsp_timeout, trust.ocsp_max_age) if trust.ocsp else None
    return TrustStore.of(
        certificates, crls, ocsp=ocsp, unchecked_revocation=trust.unchecked_revocation
    )


def load_trust(settings: Settings, *, reporting: bool = True) -> TrustContext:
    """Load the broker's key and certificate, the CAs and CRLs, and the policies."""
    key_path = settings.key_file(settings.keys.private_key, "broker.key.pem")
    cert_path = settings.key_file(settings.keys.certificate, "broker.cert.pem")
    if not key_path.exists():
        raise ConfigError(f"the broker's private key {key_path} does not exist; {DEV_HINT}")
    material = load_key_material(
        key_path,
        None if key_path.suffix.lower() in (".p12", ".pfx") else cert_path,
        _passphrase(settings),
    )
    trust = settings.trust
    store = trust_store(settings, reporting=reporting)
    if not store.roots:
        ca_files = settings.trusted_ca_files
        raise ConfigError(f"no self-signed CA certificate in {', '.join(map(str, ca_files))}")
    book = PolicyBook(
        SenderPolicy(trust.default_policy, trust.allow_legacy_sha1), {}, trust.bind_by_subject_uid
    )
    context = TrustContext(
        material, store, book, settings.organ_id, settings.keys.expiry_warning_days * 86400.0
    )
    problems = context.problems_now(utc_now())
    if problems:
        raise ConfigError("trust material cannot be used: " + "; ".join(problems))
    return context
