"""Who is calling: API tokens, SDK request signatures (HMAC), client certificates.

Pure functions over the directory snapshot and request values; the HTTP adapter
gathers the values and asks. Nothing secret is stored in the clear:

- an API token `dbk_<id>_<secret>` is kept as its SHA-256 (it has 192 bits of
  randomness: a fast hash is enough) with its id, expiry and revocation;
- an SDK system's shared secret is derived from the broker's SDK master key and
  a per-system salt (HMAC-SHA256), so the directory holds only the salt; its
  requests are checked as the unchanged SDK signs them (broker.vdxp);
- a client certificate is bound to an agency like a signing certificate: by a
  pinned fingerprint, or by its subject UID equal to one of the agency's codes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from enum import StrEnum

from broker import vdxp
from broker.directory.book import Directory
from broker.directory.model import Agency, SdkSystem, Token

TOKEN_PREFIX = "dbk"  # noqa: S105 - a prefix, not a secret


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


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- API tokens ------------------------------------------------------------------


def new_token(*, now_ms: int, expires_days: float = 0, label: str = "") -> tuple[str, Token]:
    """A fresh token (shown once) and what the directory keeps of it."""
    now = now_ms
    token_id = secrets.token_hex(4)
    plaintext = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(24)}"
    expires = int(now + expires_days * 86400_000) if expires_days else 0
    return plaintext, Token(token_id, sha256_hex(plaintext), now, expires, False, label)


def token_id_of(plaintext: str) -> str | None:
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1]:
        return None
    return parts[1]


def check_token(plaintext: str, directory: Directory, *, now_ms: int) -> AuthResult:
    now = now_ms
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
    system_id: str,
    *,
    now_ms: int,
    expires_days: float = 0,
    plain_http: bool = False,
    networks: tuple[str, ...] = (),
    manage_agencies: bool = False,
) -> SdkSystem:
    """A system id with a fresh salt: its secret is `derive_secret(master, system)`."""
    now = now_ms
    expires = int(now + expires_days * 86400_000) if expires_days else 0
    return SdkSystem(
        system_id,
        secrets.token_hex(16),
        now,
        expires,
        False,
        plain_http=plain_http,
        networks=networks,
        manage_agencies=manage_agencies,
    )


@dataclass
class NonceCache:
    """Nonces seen within the replay window (per instance; bounded). The unchanged SDK
    sends none; a client that signs a `nonce` gets its replays refused."""

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


@dataclass(frozen=True, slots=True)
class SdkCall:
    """An SDK request that passed: the calling system, the agencies it acts for (its
    own first), and the parameters it signed, the only ones an operation may use."""

    principal: Principal
    system: SdkSystem
    agencies: tuple[Agency, ...]
    params: vdxp.SignedParameters
    secure: bool

    @property
    def agency(self) -> Agency:
        return self.agencies[0]

    def acts_for(self, code: str) -> Agency | None:
        """The agency `code` names (either form), when this system acts for it."""
        return next((a for a in self.agencies if code in a.codes()), None)


@dataclass(frozen=True, slots=True)
class SdkRequest:
    """What the HTTP edge knows of an SDK request: its headers (first value by
    case-insensitive name, and every value by lower-cased name), whether it came over
    TLS, and the peer's address."""

    headers: Mapping[str, str]
    all_values: Mapping[str, list[str]]
    secure: bool
    peer: str | None


def check_sdk_request(
    request: SdkRequest,
    directory: Directory,
    master_key: bytes,
    nonces: NonceCache,
    *,
    now_ms: int,
) -> SdkCall | Refusal:
    """Verify an SDK request as the unchanged SDK signs it (broker.vdxp.read_signed:
    every parameter signed, HMAC over the signed set with the system's secret).

    The SDK signs a timestamp fixed for days and no nonce, so nothing in the request
    itself stops a replay: the channel does. A system is therefore served over HTTPS,
    or over plain HTTP only when an administrator allowed it and only from the
    networks named for it. A request that also signs a `nonce` (a client that can) is
    held to the replay window and refused when its nonce comes again."""
    now = now_ms
    try:
        params = vdxp.read_signed(request.headers, request.all_values)
    except vdxp.SignatureError as exc:
        return Refusal("unauthenticated", str(exc))
    system_id = params.get("systemid")
    if not system_id:
        return Refusal("unauthenticated", f"{vdxp.PREFIX}systemid must be signed")
    found = directory.system(system_id)
    if found is None:
        return Refusal("unauthenticated", f"unknown system id {system_id}", maybe_newer=True)
    agency, system = found
    if not params.matches(derive_secret(master_key, system)):
        return Refusal(
            "unauthenticated",
            "the request signature does not match (wrong secret?)",
            maybe_newer=True,  # the system's secret may have been rotated a moment ago
        )
    if system.revoked:
        return Refusal("unauthenticated", f"system {system_id} was revoked")
    if system.expires_at_ms and system.expires_at_ms <= now:
        return Refusal("unauthenticated", f"the secret of system {system_id} has expired")
    refused = transport_refusal(system, request.secure, request.peer) or _replay_refusal(
        params, system, nonces, now
    )
    if refused is not None:
        return refused
    if not agency.active:
        return Refusal("forbidden", f"{agency.code} is suspended")
    owned = tuple(a for a in directory.owned_by(agency, system_id) if a.active)
    return SdkCall(Principal(Method.HMAC, agency), system, owned, params, request.secure)


def transport_refusal(system: SdkSystem, secure: bool, peer: str | None) -> Refusal | None:
    """Whether the system may call from `peer` over this channel."""
    if not system.allows_address(peer):
        return Refusal(
            "insecure-transport",
            f"system {system.system_id} may not call from {peer or 'an unknown address'}",
        )
    if secure:
        return None
    if not system.plain_http or not system.networks:
        return Refusal(
            "insecure-transport",
            f"system {system.system_id} is served over HTTPS only (an administrator may "
            "allow plain HTTP from given networks: docbroker agencies system set "
            "--plain-http --network CIDR)",
        )
    return None


def _replay_refusal(
    params: vdxp.SignedParameters, system: SdkSystem, nonces: NonceCache, now: int
) -> Refusal | None:
    nonce = params.get("nonce")
    if nonce is None:
        return None  # the unchanged SDK: the channel keeps replays out
    stamp = _timestamp_ms(params.get("timestamp") or "")
    if stamp is None:
        return Refusal(
            "unauthenticated", "a request that signs a nonce must sign its timestamp too"
        )
    if abs(now - stamp) > nonces.window_ms:
        return Refusal("replayed-request", "the request timestamp is outside the allowed window")
    if not nonces.fresh(f"{system.system_id}:{nonce}", now):
        return Refusal("replayed-request", "this request was already received (nonce reused)")
    return None


VIETNAM = timezone(timedelta(hours=7))


def _timestamp_ms(text: str) -> int | None:
    """Epoch milliseconds, or the SDK's form read as Vietnam time."""
    if text.isdigit():
        return int(text)
    at = vdxp.parse_sdk_timestamp(text)
    return int(at.replace(tzinfo=VIETNAM).timestamp() * 1000) if at else None


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
