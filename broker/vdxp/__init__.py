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

java: what Java does bit for bit (String.hashCode, HashMap order, gson); wire: the
requests, their signature and reading it back; answers: the answers and list items.
Pure. Both sides of docbroker use this package: the agency-facing SDK surface (verifying
what the SDK sends) and the national-axis client and its simulator (sending it).
"""

from __future__ import annotations

from broker.vdxp.answers import (
    ALWAYS,
    FAIL,
    MESSAGE_TYPES,
    METHOD_AND_BODY,
    OK,
    OPERATIONS,
    STATUS_NAMES,
    SUCCESS_CODE,
    TRANSPORT,
    TRANSPORT_DONE,
    TRANSPORT_FAIL,
    ListedAgency,
    answer_bytes,
    answer_fail,
    answer_ok,
    received_item,
    sent_item,
    vn_timestamp,
)
from broker.vdxp.java import (
    gson_object,
    gson_string,
    java_hashmap_order,
    java_string_hash,
)
from broker.vdxp.wire import (
    CRLF,
    HASH_HEADER,
    JSON,
    OCTET_STREAM,
    PREFIX,
    PROTOCOL_HEADERS,
    SDK_VERSION,
    SIGNED_HEADER,
    SIGNED_KEYS_HEADER,
    USER_AGENT,
    VERSION_HEADER,
    ParameterMap,
    SignatureError,
    SignedParameters,
    hash_file_matches,
    package_of_send_edoc,
    parse_sdk_timestamp,
    parse_to_parameter,
    read_signed,
    request_map,
    sdk_hash_file,
    sdk_timestamp,
    send_edoc_body,
    sign,
    to_parameter,
)

__all__ = [
    "ALWAYS",
    "CRLF",
    "FAIL",
    "HASH_HEADER",
    "JSON",
    "MESSAGE_TYPES",
    "METHOD_AND_BODY",
    "OCTET_STREAM",
    "OK",
    "OPERATIONS",
    "PREFIX",
    "PROTOCOL_HEADERS",
    "SDK_VERSION",
    "SIGNED_HEADER",
    "SIGNED_KEYS_HEADER",
    "STATUS_NAMES",
    "SUCCESS_CODE",
    "TRANSPORT",
    "TRANSPORT_DONE",
    "TRANSPORT_FAIL",
    "USER_AGENT",
    "VERSION_HEADER",
    "ListedAgency",
    "ParameterMap",
    "SignatureError",
    "SignedParameters",
    "answer_bytes",
    "answer_fail",
    "answer_ok",
    "gson_object",
    "gson_string",
    "hash_file_matches",
    "java_hashmap_order",
    "java_string_hash",
    "package_of_send_edoc",
    "parse_sdk_timestamp",
    "parse_to_parameter",
    "read_signed",
    "received_item",
    "request_map",
    "sdk_hash_file",
    "sdk_timestamp",
    "send_edoc_body",
    "sent_item",
    "sign",
    "to_parameter",
    "vn_timestamp",
]
