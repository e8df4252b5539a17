"""Identifiers and headers every record carries."""

from __future__ import annotations

import uuid

from broker.core.logrecords import Record
from broker.core.records import H, make_headers, new_message_id, received_at_ms, trace_id_from


class TestMessageId:
    def test_is_a_uuid7(self) -> None:
        u = uuid.UUID(new_message_id(1_795_000_000_000))
        assert u.version == 7 and u.variant == uuid.RFC_4122

    def test_sorts_by_time(self) -> None:
        ids = [new_message_id(at_ms=ms) for ms in (1000, 2000, 3000)]
        assert ids == sorted(ids)

    def test_is_unique(self) -> None:
        assert len({new_message_id(at_ms=5) for _ in range(1000)}) == 1000


class TestTraceId:
    def test_taken_from_a_valid_traceparent(self) -> None:
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        assert trace_id_from(tp) == "4bf92f3577b34da6a3ce929d0e0e4736"

    def test_new_when_absent_or_invalid(self) -> None:
        for value in (None, "", "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01"):
            tid = trace_id_from(value)
            assert len(tid) == 32 and tid != "0" * 32


class TestHeaders:
    def test_none_values_are_left_out(self) -> None:
        assert make_headers({H.SENDER: "A", H.RECIPIENT: None, H.RECEIVED_AT: 5}) == (
            ("sender", b"A"),
            ("received-at", b"5"),
        )

    def test_received_at_falls_back_to_the_record_timestamp(self) -> None:
        rec = Record("t", 0, 0, None, b"", (("received-at", b"junk"),), 42)
        assert received_at_ms(rec) == 42
