"""Validation of edXML packages: each rule with its problem code and location."""

from __future__ import annotations

import base64
from datetime import date

import pytest

from broker.clock import utc_now
from broker.edxml.model import Kind, Priority
from broker.edxml.rules import Limits
from broker.edxml.validator import EnvelopeValidator, Verdict
from tests.edxml_samples import document, full_document, status

TODAY = date(2026, 11, 24)
V = EnvelopeValidator(clock=utc_now)


def verdict(data: bytes, validator: EnvelopeValidator = V) -> Verdict:
    return validator.validate(data, today=TODAY)


def codes(data: bytes, validator: EnvelopeValidator = V) -> list[str]:
    return [p.code for p in verdict(data, validator).problems]


def only(data: bytes, validator: EnvelopeValidator = V):
    problems = verdict(data, validator).problems
    assert len(problems) == 1, problems
    return problems[0]


class TestValidPackages:
    def test_full_document(self) -> None:
        v = verdict(full_document(attachments={"cid:1": b"a", "cid:2": b"bb"}))
        assert v.ok, v.problems
        env = v.envelope
        assert env is not None and env.kind is Kind.DOCUMENT
        assert [(a.content_id, a.decoded_size) for a in env.attachments] == [
            ("cid:1", 1),
            ("cid:2", 2),
        ]
        assert env.other is not None and env.other.priority is Priority.NORMAL

    def test_status(self) -> None:
        assert verdict(status()).ok

    @pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16"])
    def test_utf16_with_and_without_bom(self, encoding: str) -> None:
        """UTF-16, with a byte order mark ("utf-16") and without (-le/-be)."""
        text = status().decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
        data = text.encode(encoding)
        v = verdict(data)
        assert v.ok, v.problems
        assert v.envelope is not None and v.envelope.sender_id == "000.00.01.H35"

    def test_utf8_with_bom(self) -> None:
        assert verdict(b"\xef\xbb\xbf" + document()).ok

    def test_order_of_elements_does_not_matter(self) -> None:
        """Inside MessageHeader, From, ResponseFor... real senders differ: no warning."""
        data = document().replace(b"<edXML:DocumentId>", b"<!--moved--><edXML:DocumentId>")
        head, _, rest = data.partition(b"<edXML:From>")
        from_block, _, tail = rest.partition(b"</edXML:From>")
        reordered = head + tail.replace(
            b"</edXML:MessageHeader>",
            b"<edXML:From>" + from_block + b"</edXML:From></edXML:MessageHeader>",
        )
        v = verdict(reordered)
        assert v.ok and v.warnings == ()

    def test_extensions_in_other_namespaces_are_accepted(self) -> None:
        data = full_document(
            extra_header='<v:Extra xmlns:v="urn:vendor">x</v:Extra>',
            extra_root='<v:More xmlns:v="urn:vendor"/>',
        )
        assert verdict(data).ok

    def test_twenty_megabyte_attachment_passes(self) -> None:
        """lxml's default limits refuse text nodes over 10 MB; ours must not."""
        payload = b"\x25" * (20 * 1024 * 1024)
        v = verdict(full_document(attachments={"cid:big": payload}))
        assert v.ok, v.problems
        assert v.envelope is not None
        assert v.envelope.attachments[0].decoded_size == len(payload)


class TestRules:
    def test_missing_sender(self) -> None:
        p = only(document(sender=""))
        assert (p.code, p.location.path) == (
            "missing-field",
            "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/From/OrganId",
        )
        assert p.location.line is not None

    def test_no_recipient(self) -> None:
        p = only(document(recipients=()))
        assert p.code == "missing-field" and "To" in p.message

    def test_duplicate_recipient(self) -> None:
        p = only(document(recipients=("A.1", "B.2", "A.1")))
        assert p.code == "duplicate-recipient"
        assert p.location.path.endswith("/MessageHeader/To[3]")

    def test_missing_document_id_and_code(self) -> None:
        data = document(document_id="").replace(b"<edXML:CodeNumber>12</edXML:CodeNumber>", b"")
        data = data.replace(b"<edXML:CodeNotation>UBND-VP</edXML:CodeNotation>", b"")
        assert codes(data) == ["missing-field", "missing-field"]

    def test_two_senders(self) -> None:
        data = document().replace(
            b"</edXML:From>",
            b"</edXML:From><edXML:From><edXML:OrganId>X</edXML:OrganId></edXML:From>",
            1,
        )
        p = only(data)
        assert p.code == "duplicate-field" and "From" in p.message

    @pytest.mark.parametrize(
        ("value", "code"),
        [
            ("2026/02/30", "invalid-date"),
            ("20/11/2026x", "invalid-date"),
            ("2026-11-20", "invalid-date"),
            ("2026/12/01", "future-date"),
        ],
    )
    def test_promulgation_dates(self, value: str, code: str) -> None:
        p = only(full_document(promulgation_date=value))
        assert p.code == code
        assert p.location.path.endswith("PromulgationInfo/PromulgationDate")

    def test_day_first_date_is_accepted(self) -> None:
        env = verdict(full_document(promulgation_date="20/11/2026")).envelope
        assert env is not None and env.promulgation.date == date(2026, 11, 20)

    def test_priority_out_of_range(self) -> None:
        assert codes(full_document(priority="7")) == ["invalid-value"]

    def test_unknown_status_code(self) -> None:
        p = only(status(code="07"))
        assert p.code == "unknown-status-code"
        assert p.location.path.endswith("/StatusCode")

    def test_status_without_target_document(self) -> None:
        data = (
            status()
            .replace(b"<edXML:DocumentId>", b"<edXML:X>")
            .replace(b"</edXML:DocumentId>", b"</edXML:X>")
        )
        assert "schema-invalid" in codes(data)
        data = status(document_id="")
        p = only(data)
        assert p.code == "missing-field" and "ResponseFor/DocumentId" in p.message

    def test_manifest_and_attachments_must_match(self) -> None:
        data = full_document(attachments={"cid:1": b"x"})
        orphan_ref = data.replace(b"<ContentId>cid:1</ContentId>", b"<ContentId>cid:9</ContentId>")
        assert sorted(codes(orphan_ref)) == ["attachment-missing", "attachment-unreferenced"]

    def test_attachment_must_be_base64(self) -> None:
        data = full_document(attachments={"cid:1": b"xyz"}).replace(
            base64.b64encode(b"xyz"), b"not*base64!"
        )
        p = only(data)
        assert p.code == "attachment-encoding"
        assert p.location.path.endswith("Attachment/ContentTransferEncoded")

    def test_update_must_name_its_target(self) -> None:
        update = (
            "<edXML:Bussiness><edXML:BussinessDocType>2</edXML:BussinessDocType></edXML:Bussiness>"
        )
        assert codes(full_document(business=update)) == ["missing-target"]
        named = update.replace(
            "<edXML:Bussiness>", "<edXML:Bussiness><edXML:DocumentId>D,1</edXML:DocumentId>"
        )
        assert codes(full_document(business=named)) == []

    def test_replacement_must_name_its_targets(self) -> None:
        rep = (
            "<edXML:Bussiness><edXML:BussinessDocType>3</edXML:BussinessDocType>"
            "<edXML:ReplacementInfoList/></edXML:Bussiness>"
        )
        assert codes(full_document(business=rep)) == ["missing-target"]

    def test_unknown_element_in_the_edxml_namespace_where_routing_reads(self) -> None:
        """Elsewhere it is a warning (test_warnings.py); inside From it refuses."""
        data = document().replace(b"</edXML:From>", b"<edXML:Author>x</edXML:Author></edXML:From>")
        p = only(data)
        assert p.code == "schema-invalid"
        assert "edXML:Author" in p.message and "{" not in p.message

    def test_problems_come_in_document_order(self) -> None:
        data = document(sender="", recipients=())
        lines = [p.location.line for p in verdict(data).problems]
        assert lines == sorted(lines)


class TestLimits:
    def test_too_large_is_refused_before_parsing(self) -> None:
        small = EnvelopeValidator(Limits(max_bytes=1000), clock=utc_now)
        (p,) = small.validate(b"<" * 2000).problems
        assert p.code == "too-large"

    def test_too_many_recipients(self) -> None:
        few = EnvelopeValidator(Limits(max_recipients=2), clock=utc_now)
        assert codes(document(recipients=("A", "B", "C")), few) == ["too-many-recipients"]

    def test_too_many_attachments(self) -> None:
        few = EnvelopeValidator(Limits(max_attachments=1), clock=utc_now)
        data = full_document(attachments={"cid:1": b"a", "cid:2": b"b"})
        assert codes(data, few) == ["too-many-attachments"]

    def test_too_deep(self) -> None:
        shallow = EnvelopeValidator(Limits(max_depth=10), clock=utc_now)
        data = full_document(extra_header='<v:a xmlns:v="urn:v">' + "<v:a>" * 10 + "</v:a>" * 11)
        p = only(data, shallow)
        assert p.code == "too-deep" and p.location.line is not None
