"""The SDK wire protocol (broker.vdxp): what SDKVXP 2.0.1 sends, bit for bit.

The expected values here were read off the real SDK's requests (its jars against a
capture server); tests/interop/ checks the same against the jars on every run.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest

from broker import vdxp
from broker.vdxp.java import _bucket_hash

# A request the real SDK made (systemid sys1, secret s3cret): getAgenciesList.
SDK_SIGNED = (
    '{"XroadVnpt-systemid":"sys1","XroadVnpt-timestamp":"01122026T091234+0632",'
    '"XroadVnpt-Content-Type":"application/json"}'
)
SDK_HASH = "43b82f0c2693b07d591f1584fddc3396148e05fe22624db020217b258357ee92"


def _headers(pairs: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    first: dict[str, str] = {}
    every: dict[str, list[str]] = {}
    for k, v in pairs:
        first.setdefault(k, v)
        every.setdefault(k.lower(), []).append(v)
    return first, every


class TestJavaBehaviour:
    def test_string_hash_is_javas(self) -> None:
        """String.hashCode values computed by Java."""
        assert vdxp.java_string_hash("") == 0
        assert vdxp.java_string_hash("systemid") == 1976086410
        assert vdxp.java_string_hash("timestamp") == 55126294

    def test_hashmap_order_of_a_send_edoc(self) -> None:
        """The order of the SDK's sendEdoc headers, as the jar sent them."""
        put = ["timestamp", "systemid", "Content-Type", "from", "to", "servicetype",
               "messagetype", "hash-file"]  # fmt: skip
        assert vdxp.java_hashmap_order(put) == [
            "systemid", "servicetype", "messagetype", "hash-file", "from", "to", "timestamp",
            "Content-Type",
        ]  # fmt: skip

    def test_hashmap_order_after_a_resize(self) -> None:
        """Past 12 entries the table doubles; keys keep insertion order within a bucket."""
        keys = [f"k{i}" for i in range(20)]
        order = vdxp.java_hashmap_order(keys)
        assert sorted(order) == sorted(keys) and len(order) == 20
        buckets = [_bucket_hash(k) & 31 for k in order]
        assert buckets == sorted(buckets)

    def test_gson_escapes_like_gson(self) -> None:
        assert vdxp.gson_string('a"b\\c\n\x01é=<') == '"a\\"b\\\\c\\n\\u0001é=<"'

    def test_timestamp_form(self) -> None:
        at = datetime(2026, 12, 1, 9, 12, 34, 609_000)
        assert vdxp.sdk_timestamp(at) == "01122026T091234+0609"
        assert vdxp.parse_sdk_timestamp("01122026T091234+0609") == at
        assert vdxp.parse_sdk_timestamp("1733000000000") is None


class TestHashFile:
    def test_lossy_hex_drops_leading_zeros(self) -> None:
        data = b"x" * 7
        digest = hashlib.sha256(data).digest()
        lossy = vdxp.sdk_hash_file(data)
        assert lossy == "".join(format(b, "x") for b in digest)
        assert len(lossy) == 64 - sum(1 for b in digest if b < 0x10)

    def test_both_forms_match(self) -> None:
        data = b"<edXML/>"
        assert vdxp.hash_file_matches(vdxp.sdk_hash_file(data), data)
        assert vdxp.hash_file_matches(hashlib.sha256(data).hexdigest().upper(), data)
        assert not vdxp.hash_file_matches(vdxp.sdk_hash_file(b"other"), data)

    def test_send_edoc_body_loses_its_crlf(self) -> None:
        package = b"<edXML/>"
        declared = vdxp.sdk_hash_file(package)
        assert vdxp.package_of_send_edoc(vdxp.send_edoc_body(package), declared) == package
        assert vdxp.package_of_send_edoc(package, declared) == package
        assert vdxp.package_of_send_edoc(b"<edXML/>\r\n", vdxp.sdk_hash_file(b"no")) is None


class TestSigning:
    def test_parameter_map_signs_as_the_sdk(self) -> None:
        """Headers, their order and the HMAC of a real SDK request."""
        entries = vdxp.request_map("sys1", "01122026T091234+0632", vdxp.JSON, {})
        headers = entries.headers("s3cret")
        assert headers == [
            ("XroadVnpt-systemid", "sys1"),
            ("XroadVnpt-timestamp", "01122026T091234+0632"),
            ("Content-Type", "application/json"),
            ("XroadVnpt-Content-Type", "application/json"),
            ("XroadVnpt-sign-header-key", "systemid;timestamp;Content-Type"),
            ("XroadVnpt-sign-header", SDK_SIGNED),
            ("XroadVnpt-hash-header", SDK_HASH),
            ("User-Agent", vdxp.USER_AGENT),
            ("XroadVnpt-version", vdxp.SDK_VERSION),
        ]

    def test_a_put_keeps_its_place(self) -> None:
        entries = vdxp.ParameterMap()
        entries.update({"docId": "a", "status": "done"})
        entries.put("docId", "b")
        assert dict(entries.ordered()) == {"docId": "b", "status": "done"}


class TestReadSigned:
    def signed(self, **params: str) -> list[tuple[str, str]]:
        return vdxp.request_map("sys1", "01122026T091234+0632", vdxp.JSON, params).headers("k")

    def test_reads_what_the_sdk_signed(self) -> None:
        first, every = _headers(self.signed(docId="m1", status="done"))
        got = vdxp.read_signed(first, every)
        assert got.get("docid") == "m1" and got.get("status") == "done"
        assert got.get("systemid") == "sys1" and got.matches("k") and not got.matches("x")

    def test_prefixed_names_are_read_too(self) -> None:
        pairs = self.signed(docId="m1")
        pairs = [
            (k, ";".join(vdxp.PREFIX + n for n in v.split(";")))
            if k == vdxp.SIGNED_KEYS_HEADER
            else (k, v)
            for k, v in pairs
        ]
        assert vdxp.read_signed(*_headers(pairs)).get("docId") == "m1"

    def test_an_unsigned_parameter_is_refused(self) -> None:
        pairs = [*self.signed(), ("XroadVnpt-docId", "someone-elses")]
        with pytest.raises(vdxp.SignatureError, match="XroadVnpt-docid is not signed"):
            vdxp.read_signed(*_headers(pairs))

    def test_a_changed_value_is_refused(self) -> None:
        pairs = [(k, "m2" if k == "XroadVnpt-docId" else v) for k, v in self.signed(docId="m1")]
        with pytest.raises(vdxp.SignatureError, match="differs from its signed value"):
            vdxp.read_signed(*_headers(pairs))

    def test_a_repeated_parameter_is_refused(self) -> None:
        pairs = [*self.signed(docId="m1"), ("XroadVnpt-docId", "m1")]
        with pytest.raises(vdxp.SignatureError, match="differs"):
            vdxp.read_signed(*_headers(pairs))

    def test_names_and_signed_object_must_agree(self) -> None:
        pairs = [
            (k, "systemid;timestamp") if k == vdxp.SIGNED_KEYS_HEADER else (k, v)
            for k, v in self.signed()
        ]
        with pytest.raises(vdxp.SignatureError, match="exactly the headers named"):
            vdxp.read_signed(*_headers(pairs))

    def test_unsigned_request(self) -> None:
        with pytest.raises(vdxp.SignatureError, match="not signed"):
            vdxp.read_signed(*_headers([("XroadVnpt-systemid", "sys1")]))


class TestAnswers:
    def test_a_refusal_carries_the_fields_the_sdk_requires(self) -> None:
        assert vdxp.answer_fail("sendEdoc", "sender-mismatch", "no") == {
            "status": "FAIL", "ErrorCode": "sender-mismatch", "ErrorDesc": "no", "DocId": "",
        }  # fmt: skip
        assert vdxp.answer_fail("countReceiveEdoc", "x", "y")["count"] == 0

    def test_answers_are_ascii(self) -> None:
        assert vdxp.answer_bytes(vdxp.answer_ok("getEdoc", data="")).isascii()

    def test_to_parameter(self) -> None:
        assert vdxp.to_parameter(["a", "b"]) == '["a","b"]'
        assert vdxp.parse_to_parameter('["a","b"]') == ["a", "b"]
        assert vdxp.parse_to_parameter("000.00.01.H35") == ["000.00.01.H35"]
        assert vdxp.parse_to_parameter("{}") is None
