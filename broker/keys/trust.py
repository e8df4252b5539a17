"""Trust material loaded once at start: the broker's key, the trust store, policies."""

from __future__ import annotations

from pathlib import Path

from broker.clock import utc_now
from broker.config import Settings
from broker.core.errors import ConfigError
from broker.keys.pem import load_key_material, trust_store_from_files
from broker.keys.secrets import read_secret
from broker.trust.context import TrustContext
from broker.trust.policy import PolicyBook, SenderPolicy

DEV_HINT = "for development keys run: docbroker keys init"


def _passphrase(settings: Settings) -> bytes | None:
    keys = settings.keys
    return read_secret(
        "the key passphrase (keys.passphrase_file)",
        file=keys.passphrase_file,
        env=keys.passphrase_env,
    )


def load_trust(settings: Settings) -> TrustContext:
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
    ca_files = settings.trusted_ca_files
    missing = [str(p) for p in ca_files if not p.exists()]
    if missing:
        raise ConfigError(f"trusted CA file(s) missing: {', '.join(missing)}; {DEV_HINT}")
    store = trust_store_from_files(ca_files, [Path(p) for p in trust.crl_files])
    if not store.roots:
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
