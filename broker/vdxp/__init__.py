"""The national axis's SDK wire protocol, exactly as VNPT's SDKVXP 2.0.1 jars speak it. Pure.

Read from the jars (`VnptService.addXroadVnptHashHeader`, `KnobstickServiceImp`,
`HttpConnection`; ../shared/interop/vnpt-sdk/README.md), not from notes:

- the SDK keeps ONE parameter map (a `java.util.HashMap`) per service object: the
  `timestamp` it was built with (`ddMMyyyy'T'HHmmss+SSSS`, local time, never renewed),
  `systemid`, a `Content-Type`, and every parameter of every call so far;
- for each entry `k`, in the map's iteration order, it sends a header `XroadVnpt-k`
  (and `Content-Type` itself as well); `XroadVnpt-sign-header` is gson's
  `{"XroadVnpt-k":"v",...}` of those entries, `XroadVnpt-sign-header-key` their
  names without the prefix joined by `;`, `XroadVnpt-hash-header` the lowercase hex
  HMAC-SHA256 of the sign header under the shared secret; no nonce, ever;
- `sendEdoc` posts the file's bytes followed by CRLF, no multipart framing, with
  `hash-file` = the file's SHA-256 written byte by byte with `Integer.toHexString`,
  so every byte below 0x10 loses its leading zero.

Both sides of docbroker use this module: the agency-facing SDK surface (verifying
what the SDK sends) and the national-axis client and its simulator (sending it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

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


# -- what Java does, bit for bit ----------------------------------------------------


def java_string_hash(text: str) -> int:
    """`String.hashCode()`: over UTF-16 code units, as a signed 32-bit int."""
    h = 0
    units = text.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + (units[i] << 8 | units[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def _bucket_hash(key: str) -> int:
    h = java_string_hash(key) & 0xFFFFFFFF
    return h ^ (h >> 16)  # HashMap.hash(): the high bits spread into the low ones


def java_hashmap_order(keys: Sequence[str]) -> list[str]:
    """The iteration order of a `java.util.HashMap` into which `keys` were put in this
    order (each once): by bucket, then by insertion within a bucket. A resize splits
    buckets preserving that relative order, so only the final capacity matters
    (16, doubled while the size exceeds 3/4 of it)."""
    capacity = 16
    while len(keys) > capacity * 3 // 4:
        capacity *= 2
    indexed = list(enumerate(keys))
    indexed.sort(key=lambda item: (_bucket_hash(item[1]) & (capacity - 1), item[0]))
    return [k for _, k in indexed]


_GSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\b": "\\b", "\n": "\\n", "\r": "\\r"}
_GSON_ESCAPES |= {"\f": "\\f", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def gson_string(text: str) -> str:
    """A JSON string literal as gson's JsonWriter writes it (not HTML-safe): quotes,
    backslashes and control characters escaped, everything else as it is."""
    out = ['"']
    for ch in text:
        if ch in _GSON_ESCAPES:
            out.append(_GSON_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def gson_object(pairs: Iterable[tuple[str, str]]) -> str:
    """`JsonObject.toString()` of string properties, in the order given."""
    return "{" + ",".join(f"{gson_string(k)}:{gson_string(v)}" for k, v in pairs) + "}"


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


# -- answers, in the shapes the SDK reads -------------------------------------------

OK = "OK"
FAIL = "FAIL"
SUCCESS_CODE = "0"
# The fields each operation's reader takes without checking that they are there: an
# answer without them makes the SDK throw and hand its caller a null result, so a
# refusal carries them too (empty). JSON null is never sent: the SDK's getAsString()
# throws on it.
ALWAYS = {
    "sendEdoc": {"DocId": ""},
    "getReceivedEdocList": {"data": []},
    "getSentEdocList": {"data": []},
    "getEdoc": {"data": ""},
    "countReceiveEdoc": {"count": 0},
    "countReceiveStatus": {"count": 0},
    "getAgenciesList": {"data": []},
    "getAgenciesListQD20": {"data": []},
    "getSynchronizeUnit": {"data": []},
}
OPERATIONS = (
    "sendEdoc",
    "getReceivedEdocList",
    "getSentEdocList",
    "getEdoc",
    "downloadEdoc",
    "updateStatus",
    "countReceiveEdoc",
    "countReceiveStatus",
    "getAgenciesList",
    "getAgenciesListQD20",
    "getSynchronizeUnit",
    "registerAgency",
    "deleteAgency",
)
MESSAGE_TYPES = ("edoc", "status")
# The HTTP method and body of each operation as the SDK's HttpConnection sends it:
# `execute(url, method, null, headers)` is a POST of an empty form (or a GET);
# `execute(..., InputStream)` posts the text `{}`, even where the SDK names the method
# GET (countReceiveEdoc, countReceiveStatus); downloadEdoc is a real GET. (sendEdoc
# posts the file, registerAgency its JSON.)
_EMPTY_FORM = ("POST", b"")
_BRACES = ("POST", b"{}")
METHOD_AND_BODY: dict[str, tuple[str, bytes]] = {
    "getReceivedEdocList": _EMPTY_FORM,
    "getSentEdocList": _EMPTY_FORM,
    "getAgenciesList": _EMPTY_FORM,
    "getAgenciesListQD20": _EMPTY_FORM,
    "getSynchronizeUnit": _EMPTY_FORM,
    "getEdoc": _BRACES,
    "updateStatus": _BRACES,
    "countReceiveEdoc": _BRACES,
    "countReceiveStatus": _BRACES,
    "deleteAgency": _BRACES,
    "downloadEdoc": ("GET", b""),
}
TRANSPORT_DONE = "done"
TRANSPORT_FAIL = "fail"


def answer_ok(
    operation: str, description: str = "Thành công", **fields: object
) -> dict[str, object]:
    """A success answer: status OK, ErrorCode "0", and the operation's fields."""
    return {
        "status": OK,
        "ErrorCode": SUCCESS_CODE,
        "ErrorDesc": description,
        **ALWAYS.get(operation, {}),
        **fields,
    }


def answer_fail(operation: str, code: str, description: str) -> dict[str, object]:
    """A refusal the SDK can read: status FAIL, the problem code as ErrorCode, the
    reason as ErrorDesc, and the fields the operation's reader requires, empty."""
    return {
        "status": FAIL,
        "ErrorCode": code or "fail",
        "ErrorDesc": description,
        **ALWAYS.get(operation, {}),
    }


def answer_bytes(answer: Mapping[str, object]) -> bytes:
    """The JSON of an answer, ASCII only: sendEdoc's reader decodes the answer as
    US-ASCII, so anything else must travel as \\u escapes."""
    return json.dumps(answer, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def vn_timestamp(at: datetime) -> str:
    """edXML's timestamp form (yyyy/MM/dd HH:mm:ss), used in list answers."""
    return at.strftime("%Y/%m/%d %H:%M:%S")


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


# -- list items, with the meaning docbroker gives each field ----------------------

# Transport state of one copy of a package (getReceivedEdocList `status`,
# getSentEdocList `sendStatus`), with the text sent beside it.
TRANSPORT = {
    "initial": "Chờ nhận (waiting for the recipient)",
    "processing": "Đang nhận (fetched, not yet confirmed)",
    TRANSPORT_DONE: "Đã nhận (the recipient confirmed it)",
    TRANSPORT_FAIL: "Không chuyển được (could not be delivered)",
}
# Business statuses (StatusCode) as getSentEdocList's receiveStatusDesc names them.
STATUS_NAMES = {
    "01": "Đã đến",
    "02": "Từ chối tiếp nhận",
    "03": "Đã tiếp nhận",
    "04": "Phân công",
    "05": "Đang xử lý",
    "06": "Hoàn thành",
    "13": "Lấy lại",
    "15": "Đồng ý lấy lại/cập nhật",
    "16": "Từ chối lấy lại/cập nhật",
}


def received_item(
    doc_id: str,
    sender: str,
    recipient: str,
    message_type: str,
    created: str,
    updated: str,
    transport: str,
) -> dict[str, str]:
    """One getReceivedEdocList entry: `docId` is what getEdoc and updateStatus take,
    `from`/`to` the agency codes, the times edXML timestamps (Vietnam time), `status`
    the transport state of this copy (TRANSPORT)."""
    return {
        "docId": doc_id,
        "from": sender,
        "to": recipient,
        "serviceType": "eDoc",
        "messageType": message_type,
        "created_time": created,
        "updated_time": updated,
        "status": transport,
        "status_desc": TRANSPORT.get(transport, ""),
    }


def sent_item(
    *,
    sender_doc_id: str,
    receiver_doc_id: str,
    from_code: str,
    to_code: str,
    message_type: str,
    transport: str,
    status_code: str,
    title: str,
    notation: str,
    sent_time: str,
    received_time: str,
) -> dict[str, str]:
    """One getSentEdocList entry: one recipient's copy of a package the caller sent.
    `senderDocId` is the DocId sendEdoc answered, `receiverDocId` the docId the
    recipient takes it under; `sendStatus` the copy's transport state (TRANSPORT),
    `receiveStatus` the latest business status the recipient sent about it (a
    StatusCode such as "03", "" while none), `title` its Subject, `notation` its
    number/notation, the times edXML timestamps ("" while not yet)."""
    return {
        "serviceType": "eDoc",
        "messageType": message_type,
        "senderDocId": sender_doc_id,
        "receiverDocId": receiver_doc_id,
        "fromCode": from_code,
        "toCode": to_code,
        "sendStatus": transport,
        "sendStatusDesc": TRANSPORT.get(transport, ""),
        "receiveStatus": status_code,
        "receiveStatusDesc": STATUS_NAMES.get(status_code, ""),
        "title": title,
        "notation": notation,
        "sentTime": sent_time,
        "receivedTime": received_time,
    }


@dataclass(frozen=True, slots=True)
class ListedAgency:
    """An agency as the directory operations list it. `id` is its QĐ 20 code (stable,
    unique), `pid` its parent's id ("" at the top)."""

    code: str  # QĐ 20/2020 form
    code102: str  # QCVN 102 form ("" when it has none)
    name: str
    pid: str = ""
    mail: str = ""
    version: int = 0  # grows with every change of the agency (a Java int)
    modified: str = ""  # when it last changed (edXML timestamp)
    deleted: bool = False

    def qcvn102(self) -> dict[str, str]:
        """getAgenciesList: `code` in the QCVN 102 form (its QĐ 20 code when it has
        none); `oldCode` is not tracked by docbroker and is sent empty."""
        return {"id": self.code, "pid": self.pid, "code": self.code102 or self.code,
                "name": self.name, "mail": self.mail, "oldCode": ""}  # fmt: skip

    def qd20(self) -> dict[str, str]:
        """getAgenciesListQD20: `code` in the QĐ 20 form, `code102` its QCVN 102 code."""
        return {"id": self.code, "pid": self.pid, "code": self.code, "name": self.name,
                "mail": self.mail, "code102": self.code102}  # fmt: skip

    def unit(self, center_code: str) -> dict[str, object]:
        """getSynchronizeUnit: every field of the SDK's UnitSynchronize."""
        return {"id": self.code, "pid": self.pid, "code": self.code, "name": self.name,
                "mail": self.mail, "centerCode": center_code, "version": self.version,
                "deleted": self.deleted, "modifyDate": self.modified,
                "isAgency": True}  # fmt: skip
