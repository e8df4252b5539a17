"""The SDK's requests on the wire: its headers and their signature, its timestamp,
sendEdoc's body and hash-file; reading a request's signed parameters back."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from broker.vdxp.java import gson_object, gson_string, java_hashmap_order

PREFIX = "XroadVnpt-"
SIGNED_KEYS_HEADER = "XroadVnpt-sign-header-key"
SIGNED_HEADER = "XroadVnpt-sign-header"
HASH_HEADER = "XroadVnpt-hash-header"
VERSION_HEADER = "XroadVnpt-version"
USER_AGENT = "JAVASDKAgent/1.0.0 XRoad/VPCP"
SDK_VERSION = "3.0.201608"
# Headers of the protocol itself, never parameters.
PROTOCOL_HEADERS = frozenset(
    h.lower() for h in (SIGNED_KEYS_HEADER, SIGNED_HEADER, HASH_HEADER, VERSION_HEADER)
)
JSON = "application/json"
OCTET_STREAM = "application/octet-stream"
CRLF = b"\r\n"


def sdk_timestamp(at: datetime) -> str:
    """`new SimpleDateFormat("ddMMyyyy'T'HHmmss+SSSS").format(date)`: local time,
    milliseconds padded to four digits; no offset (the `+` is a literal)."""
    return at.strftime("%d%m%YT%H%M%S") + f"+{at.microsecond // 1000:04d}"


def parse_sdk_timestamp(text: str) -> datetime | None:
    """The SDK's timestamp as a naive local datetime; None when it is not one."""
    stamp, sep, millis = text.partition("+")
    try:
        at = datetime.strptime(stamp, "%d%m%YT%H%M%S")
    except ValueError:
        return None
    if not sep or not millis.isdigit():
        return None
    return at.replace(microsecond=min(int(millis), 999) * 1000)


def sdk_hash_file(data: bytes) -> str:
    """`hash-file` as the SDK computes it: `Integer.toHexString(0xFF & b)` per byte of
    the SHA-256, so bytes below 0x10 lose their leading zero."""
    return "".join(f"{b:x}" for b in hashlib.sha256(data).digest())


def hash_file_matches(declared: str, data: bytes) -> bool:
    """Whether `declared` is the SHA-256 of `data`, in the SDK's lossy hex or the
    correct 64-digit form (constant-time for both)."""
    given = declared.strip().lower()
    digest = hashlib.sha256(data).digest()
    full = digest.hex()
    lossy = "".join(f"{b:x}" for b in digest)
    return hmac.compare_digest(given, full) or hmac.compare_digest(given, lossy)


def send_edoc_body(package: bytes) -> bytes:
    """The body of `sendEdoc` as the SDK writes it: the file, then CRLF."""
    return package + CRLF


def package_of_send_edoc(body: bytes, declared_hash: str) -> bytes | None:
    """The package a `sendEdoc` body carries, checked against its `hash-file`: the
    body less the SDK's trailing CRLF, or (a client that adds none) the whole body.
    None: neither matches the declared hash."""
    if body.endswith(CRLF) and hash_file_matches(declared_hash, body[: -len(CRLF)]):
        return body[: -len(CRLF)]
    if hash_file_matches(declared_hash, body):
        return body
    return None


# -- signing ----------------------------------------------------------------------


def sign(secret: str, signed: str) -> str:
    """The hash header of `signed`. A header value arrives as text decoded from UTF-8
    with surrogateescape (aiohttp), so encoding it back that way gives the bytes sent."""
    data = signed.encode("utf-8", "surrogateescape")
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


@dataclass
class ParameterMap:
    """The SDK's parameter map: entries keep the place they were first put in, a put
    of an existing name replaces its value, nothing is ever removed. Headers come out
    in `java.util.HashMap` order, so that docbroker's requests are the SDK's, header
    for header."""

    entries: dict[str, str] = field(default_factory=dict)

    def put(self, name: str, value: str) -> None:
        self.entries[name] = value

    def update(self, params: Mapping[str, str]) -> None:
        for name, value in params.items():
            self.put(name, value)

    def ordered(self) -> list[tuple[str, str]]:
        return [(k, self.entries[k]) for k in java_hashmap_order(list(self.entries))]

    def headers(self, secret: str) -> list[tuple[str, str]]:
        """Every header the SDK sends for this map, in the order it sends them."""
        ordered = self.ordered()
        out: list[tuple[str, str]] = []
        for name, value in ordered:
            if name == "Content-Type":
                out.append((name, value))
            out.append((PREFIX + name, value))
        signed = gson_object((PREFIX + k, v) for k, v in ordered)
        out += [
            (SIGNED_KEYS_HEADER, ";".join(k for k, _ in ordered)),
            (SIGNED_HEADER, signed),
            (HASH_HEADER, sign(secret, signed)),
            ("User-Agent", USER_AGENT),
            (VERSION_HEADER, SDK_VERSION),
        ]
        return out


def request_map(
    system_id: str, timestamp: str, content_type: str, params: Mapping[str, str]
) -> ParameterMap:
    """A fresh service object's map for one call: what the SDK puts, in its order
    (constructor: timestamp, systemid; the call: Content-Type, then its parameters)."""
    entries = ParameterMap()
    entries.put("timestamp", timestamp)
    entries.put("systemid", system_id)
    entries.put("Content-Type", content_type)
    entries.update(params)
    return entries


# -- verifying --------------------------------------------------------------------


class SignatureError(ValueError):
    """The request's signature headers are missing, malformed or inconsistent (the
    message says which, without secrets)."""


@dataclass(frozen=True, slots=True)
class SignedParameters:
    """What a request signed: parameter names (without the prefix) to their values,
    and the exact text the HMAC covers. Only these values may be acted on."""

    values: Mapping[str, str]
    signed_text: str
    hash_hex: str

    def get(self, name: str) -> str | None:
        """A signed parameter, by its name as the SDK spells it (case-insensitive)."""
        found = self.values.get(name)
        if found is not None:
            return found
        lowered = name.lower()
        return next((v for k, v in self.values.items() if k.lower() == lowered), None)

    def matches(self, secret: str) -> bool:
        """Whether the HMAC is this secret's (constant-time)."""
        return hmac.compare_digest(sign(secret, self.signed_text), self.hash_hex)


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in pairs:
        if k in out:
            raise SignatureError(f"{SIGNED_HEADER} names {k} twice")
        out[k] = v
    return out


def read_signed(
    headers: Mapping[str, str], all_values: Mapping[str, list[str]]
) -> SignedParameters:
    """The signed parameters of a request, checked for consistency (not yet for the
    secret: `SignedParameters.matches`).

    `headers` is case-insensitive (first value of each name); `all_values` every value
    of each lower-cased name. The names in the key header may carry the prefix or not
    (the SDK sends them without); the sign header must hold exactly those names,
    prefixed, each with the value of its header. A parameter header that is sent but
    not signed is refused: a request is acted on only for what it signed."""
    raw = headers.get(SIGNED_HEADER)
    keys = headers.get(SIGNED_KEYS_HEADER)
    mac = headers.get(HASH_HEADER)
    if not raw or not keys or not mac:
        raise SignatureError(
            f"the request is not signed ({SIGNED_HEADER}, {SIGNED_KEYS_HEADER} and "
            f"{HASH_HEADER} are required)"
        )
    for name in (SIGNED_HEADER, SIGNED_KEYS_HEADER, HASH_HEADER):
        if len(all_values.get(name.lower(), ())) > 1:
            raise SignatureError(f"{name} is sent more than once")
    names = [_unprefixed(k.strip()) for k in keys.split(";") if k.strip()]
    if len({n.lower() for n in names}) != len(names):
        raise SignatureError(f"{SIGNED_KEYS_HEADER} names a header twice")
    try:
        signed = json.loads(raw, object_pairs_hook=_unique_pairs)
    except ValueError as exc:
        raise SignatureError(f"{SIGNED_HEADER} is not a JSON object: {exc}") from None
    if not isinstance(signed, dict) or not all(isinstance(v, str) for v in signed.values()):
        raise SignatureError(f"{SIGNED_HEADER} must be a JSON object of strings")
    by_name = {_unprefixed(k).lower(): (k, v) for k, v in signed.items()}
    if len(by_name) != len(signed) or sorted(by_name) != sorted(n.lower() for n in names):
        raise SignatureError(
            f"{SIGNED_HEADER} must hold exactly the headers named in {SIGNED_KEYS_HEADER}"
        )
    values: dict[str, str] = {}
    for name in names:
        key, value = by_name[name.lower()]
        if not key.lower().startswith(PREFIX.lower()):
            raise SignatureError(f"{SIGNED_HEADER} names {key}, not {PREFIX}{name}")
        sent = all_values.get((PREFIX + name).lower(), [])
        if sent != [value]:
            raise SignatureError(f"{PREFIX}{name} differs from its signed value")
        values[name] = value
    signed_lower = {(PREFIX + n).lower() for n in names}
    for header in all_values:
        if (
            header.startswith(PREFIX.lower())
            and header not in signed_lower
            and header not in PROTOCOL_HEADERS
        ):
            raise SignatureError(
                f"{PREFIX}{header[len(PREFIX) :]} is not signed: a parameter must be named "
                f"in {SIGNED_KEYS_HEADER}"
            )
    return SignedParameters(values, raw, mac.strip().lower())


def _unprefixed(name: str) -> str:
    return name[len(PREFIX) :] if name.lower().startswith(PREFIX.lower()) else name


def to_parameter(recipients: Sequence[str]) -> str:
    """sendEdoc's `to`: the SDK signs the JSON text of the caller's value (gson
    compact form), e.g. `["000.00.01.H35"]`."""
    return "[" + ",".join(gson_string(r) for r in recipients) + "]"


def parse_to_parameter(text: str) -> list[str] | None:
    """The recipients a `to` parameter names: a JSON array of strings, one JSON string,
    or a plain code; None when it is none of these."""
    try:
        value = json.loads(text)
    except ValueError:
        return [text.strip()] if text.strip() else None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None
