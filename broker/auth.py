"""Who is calling: API tokens, SDK request signatures (HMAC), client certificates.

Pure functions over the directory snapshot and request values; the HTTP adapter
gathers the values and asks. Nothing secret is stored in the clear:

- an API token `dbk_<id>_<secret>` is kept as its SHA-256 (it has 192 bits of
  randomness: a fast hash is enough) with its id, expiry and revocation;
- an SDK system's shared secret is derived from the broker's SDK master key and
  a per-system salt (HMAC-SHA256), so the directory holds only the salt;
- a client certificate is bound to an agency like a signing certificate: by a
  pinned fingerprint, or by its subject UID equal to one of the agency's codes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from broker.directory.book import Directory
from broker.directory.model import Agency, SdkSystem, Token

TOKEN_PREFIX = "dbk"  # noqa: S105 - a prefix, not a secret
SDK_PREFIX = "XroadVnpt-"
SIGNED_KEYS_HEADER = "XroadVnpt-sign-header-key"
SIGNED_HEADER = "XroadVnpt-sign-header"
HASH_HEADER = "XroadVnpt-hash-header"
REPLAY_SIGNED = ("XroadVnpt-timestamp", "XroadVnpt-nonce")


class Method(StrEnum):
    TOKEN = "token"  # noqa: S105 - a method name
    MTLS = "mtls"
    HMAC = "hmac"
    ADMIN = "admin-token"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: an agency (by some method), or an administrator."""

    method: Method
    agency: Agency | None = None  # None: an administrator

    @property
    def admin(self) -> bool:
        return self.agency is None

    @property
    def name(self) -> str:
        return self.agency.code if self.agency else "admin"

    def is_agency(self, code: str) -> bool:
        """Whether the caller is the agency `code` names (either code form)."""
        return self.agency is not None and code in self.agency.codes()


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a credential was not accepted (said to the caller without secrets)."""

    code: str  # unauthenticated | forbidden | replayed-request
    message: str
    # Not in this snapshot of the directory, but perhaps in a newer one: a credential
    # made or rotated a moment ago. The adapter may catch up with the directory and ask
    # again before it refuses.
    maybe_newer: bool = False


AuthResult = Principal | Refusal


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- API tokens ------------------------------------------------------------------


def new_token(
    *, now_ms: int | None = None, expires_days: float = 0, label: str = ""
) -> tuple[str, Token]:
    """A fresh token (shown once) and what the directory keeps of it."""
    now = _now_ms() if now_ms is None else now_ms
    token_id = secrets.token_hex(4)
    plaintext = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(24)}"
    expires = int(now + expires_days * 86400_000) if expires_days else 0
    return plaintext, Token(token_id, sha256_hex(plaintext), now, expires, False, label)


def token_id_of(plaintext: str) -> str | None:
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1]:
        return None
    return parts[1]


def check_token(plaintext: str, directory: Directory, *, now_ms: int | None = None) -> AuthResult:
    now = _now_ms() if now_ms is None else now_ms
    token_id = token_id_of(plaintext)
    if token_id is None:
        return Refusal("unauthenticated", "not a docbroker token")
    found = directory.token(token_id)
    if found is None:
        return Refusal("unauthenticated", "the token is not valid", maybe_newer=True)
    agency, token = found
    if not hmac.compare_digest(token.sha256, sha256_hex(plaintext)):
        return Refusal("unauthenticated", "the token is not valid")
    if token.revoked:
        return Refusal("unauthenticated", f"token {token_id} was revoked")
    if token.expires_at_ms and token.expires_at_ms <= now:
        return Refusal("unauthenticated", f"token {token_id} has expired")
    if not agency.active:
        return Refusal("forbidden", f"{agency.code} is suspended")
    return Principal(Method.TOKEN, agency)


def check_admin_token(plaintext: str, admin_hashes: frozenset[str]) -> Principal | None:
    digest = sha256_hex(plaintext)
    if any(hmac.compare_digest(digest, h) for h in admin_hashes):
        return Principal(Method.ADMIN)
    return None


# -- SDK request signatures ----------------------------------------------------------


def derive_secret(master_key: bytes, system: SdkSystem) -> str:
    mac = hmac.new(
        master_key, f"docbroker-sdk:{system.system_id}:{system.salt}".encode(), hashlib.sha256
    )
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def new_system(
    system_id: str, *, now_ms: int | None = None, expires_days: float = 0, legacy: bool = False
) -> SdkSystem:
    """A system id with a fresh salt: its secret is `derive_secret(master, system)`."""
    now = _now_ms() if now_ms is None else now_ms
    expires = int(now + expires_days * 86400_000) if expires_days else 0
    return SdkSystem(system_id, secrets.token_hex(16), now, expires, False, legacy)


def sign_sdk_headers(params: Mapping[str, str], secret: str) -> dict[str, str]:
    """The headers an SDK client sends: `XroadVnpt-<k>` for each parameter, and the
    signature over them. (docbroker's tests and its national-axis client use it.)"""
    prefixed = {f"{SDK_PREFIX}{k}": v for k, v in params.items()}
    body = json.dumps(prefixed, separators=(",", ":"))  # ASCII: it travels as a header
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    return {
        **prefixed,
        SIGNED_KEYS_HEADER: ";".join(prefixed),
        SIGNED_HEADER: body,
        HASH_HEADER: mac,
    }


@dataclass
class NonceCache:
    """Nonces seen within the replay window (per instance; bounded)."""

    window_ms: int = 300_000
    capacity: int = 100_000
    _seen: OrderedDict[str, int] = field(default_factory=OrderedDict)

    def fresh(self, key: str, now_ms: int) -> bool:
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if at > now_ms - 2 * self.window_ms and len(self._seen) < self.capacity:
                break
            del self._seen[oldest]
        if key in self._seen:
            return False
        self._seen[key] = now_ms
        return True


def check_sdk_request(
    headers: Mapping[str, str],
    directory: Directory,
    master_key: bytes,
    nonces: NonceCache,
    *,
    now_ms: int | None = None,
    also_signed: tuple[str, ...] = (),
    secure: bool = False,
) -> AuthResult:
    """Verify an SDK request's signature headers; returns the calling agency.

    `headers` must be case-insensitive (aiohttp's are). Every header named in the
    signed set must carry the value that was signed. The system id must be
    signed, and so must `also_signed` (e.g. the hash of an uploaded file). A
    timestamp within the window and a fresh nonce must be signed too, unless the
    system was registered as a legacy SDK client that sends neither and the request
    came over TLS (`secure`): without them, only the channel keeps a captured
    request from being replayed."""
    now = _now_ms() if now_ms is None else now_ms
    signed = signed_values(headers)
    if isinstance(signed, Refusal):
        return signed
    system_id = signed.get("xroadvnpt-systemid")
    if system_id is None:
        return Refusal("unauthenticated", "XroadVnpt-systemid must be signed")
    found = directory.system(system_id)
    if found is None:
        return Refusal("unauthenticated", f"unknown system id {system_id}", maybe_newer=True)
    agency, system = found
    for name in () if system.legacy and secure else also_signed:
        if name.lower() not in signed:
            return Refusal("unauthenticated", f"{name} must be signed")
    if not signature_matches(headers, derive_secret(master_key, system)):
        return Refusal(
            "unauthenticated",
            "the request signature does not match (wrong secret?)",
            maybe_newer=True,  # the system's secret may have been rotated a moment ago
        )
    if system.revoked:
        return Refusal("unauthenticated", f"system {system_id} was revoked")
    if system.expires_at_ms and system.expires_at_ms <= now:
        return Refusal("unauthenticated", f"the secret of system {system_id} has expired")
    stale = _replay_refusal(signed, system, nonces, now, secure=secure)
    if stale is not None:
        return stale
    if not agency.active:
        return Refusal("forbidden", f"{agency.code} is suspended")
    return Principal(Method.HMAC, agency)


def signature_matches(headers: Mapping[str, str], secret: str) -> bool:
    """Whether XroadVnpt-hash-header is the HMAC of XroadVnpt-sign-header with
    `secret` (constant-time). Check `signed_values` first."""
    body = headers.get(SIGNED_HEADER, "").encode()
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get(HASH_HEADER, "").strip().lower())


def signed_values(headers: Mapping[str, str]) -> dict[str, str] | Refusal:
    """The signed header values (lower-case names), checked against the headers sent."""
    raw = headers.get(SIGNED_HEADER)
    keys = headers.get(SIGNED_KEYS_HEADER)
    if not raw or not keys or not headers.get(HASH_HEADER):
        return Refusal(
            "unauthenticated",
            f"the request is not signed ({SIGNED_HEADER}, {SIGNED_KEYS_HEADER} "
            f"and {HASH_HEADER} are required)",
        )
    try:
        signed = json.loads(raw)
    except ValueError:
        return Refusal("unauthenticated", f"{SIGNED_HEADER} is not JSON")
    names = [k for k in keys.split(";") if k]
    if (
        not isinstance(signed, dict)
        or sorted(signed) != sorted(names)
        or not all(isinstance(v, str) for v in signed.values())
    ):
        return Refusal(
            "unauthenticated",
            f"{SIGNED_HEADER} must hold exactly the headers named in {SIGNED_KEYS_HEADER}",
        )
    for name, value in signed.items():
        if headers.get(name) != value:
            return Refusal("unauthenticated", f"{name} differs from its signed value")
    return {k.lower(): v for k, v in signed.items()}


def _replay_refusal(
    signed: Mapping[str, str], system: SdkSystem, nonces: NonceCache, now: int, *, secure: bool
) -> Refusal | None:
    stamp_text = signed.get("xroadvnpt-timestamp")
    nonce = signed.get("xroadvnpt-nonce")
    if stamp_text is None or nonce is None:
        if system.legacy and secure:
            return None
        if system.legacy:
            return Refusal(
                "unauthenticated",
                f"system {system.system_id} signs no timestamp or nonce: "
                "accepted only over HTTPS (http.tls)",
            )
        return Refusal(
            "unauthenticated", f"{' and '.join(REPLAY_SIGNED)} must be signed (replay protection)"
        )
    try:
        stamp = int(stamp_text)
    except ValueError:
        return Refusal("unauthenticated", "XroadVnpt-timestamp must be epoch milliseconds")
    if abs(now - stamp) > nonces.window_ms:
        return Refusal("replayed-request", "the request timestamp is outside the allowed window")
    if not nonces.fresh(f"{system.system_id}:{nonce}", now):
        return Refusal("replayed-request", "this request was already received (nonce reused)")
    return None


# -- client certificates -----------------------------------------------------------


def agency_for_certificate(
    directory: Directory, fingerprint: str, uid: str | None, bind_by_subject_uid: bool
) -> AuthResult:
    """The agency a (chain-checked) client certificate belongs to."""
    pinned = [a for a in directory if fingerprint in a.certificates]
    if pinned:
        agency = pinned[0]
    elif bind_by_subject_uid and uid:
        found = directory.find(uid)
        if found is None or found.certificates:  # a pin on the agency excludes others
            return Refusal(
                "unauthenticated", "the client certificate names no agency", maybe_newer=True
            )
        agency = found
    else:
        return Refusal(
            "unauthenticated", "the client certificate is bound to no agency", maybe_newer=True
        )
    if not agency.active:
        return Refusal("forbidden", f"{agency.code} is suspended")
    return Principal(Method.MTLS, agency)
