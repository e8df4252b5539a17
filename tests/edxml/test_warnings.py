"""The second tier: irregular packages accepted with located warnings, and what stays
refused because routing or trust reads it.

Each case is a package of the tests' own builders with one deviation real traffic
carries (the national axis's hops naming `null`, vendor elements, Bussiness before
the TraceHeaders); a strict sender gets each warning as a problem instead."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

import pytest
import yaml

from broker.clock import utc_now
from broker.core.problems import PROBLEM_TYPES, WARNING_TYPES, Irregularity
from broker.edxml.model import TraceHeader
from broker.edxml.validator import EnvelopeValidator, Verdict, schema_index
from tests.edxml_samples import document, full_document, hop, status

TODAY = date(2026, 11, 24)
V = EnvelopeValidator(clock=utc_now)
HEADER = "/edXML/edXMLEnvelope/edXMLHeader"
TRACE = f"{HEADER}/TraceHeaderList"
BUSINESS = "<edXML:Bussiness><edXML:BussinessDocType>0</edXML:BussinessDocType></edXML:Bussiness>"
STRAY_ORGAN = "<edXML:OrganId>X</edXML:OrganId><edXML:Timestamp>"


def verdict(data: bytes) -> Verdict:
    return V.validate(data, today=TODAY)


def line_of(data: bytes, marker: str) -> int:
    """The line on which `marker` first appears in the package."""
    return data[: data.index(marker.encode())].count(b"\n") + 1


def only_warning(data: bytes) -> Irregularity:
    """The package is accepted, with one warning, which a strict sender gets refused."""
    v = verdict(data)
    assert v.ok and v.envelope is not None, v.problems
    assert len(v.warnings) == 1, v.warnings
    (w,) = v.warnings
    strict = v.strict()
    assert not strict.ok and strict.warnings == ()
    assert [(p.code, p.message, p.location) for p in strict.problems] == [
        (w.code, w.message, w.location)
    ]
    return w


def where(w: Irregularity) -> tuple[str, int | None, str | None]:
    assert w.location is not None
    return w.code, w.location.line, w.location.path


class TestTraceHeaders:
    @pytest.mark.parametrize(
        ("organ_id", "said"),
        [("null", "'null'"), ("NULL", "'NULL'"), ("", "empty"), ("  ", "empty")],
    )
    def test_a_hop_naming_nobody(self, organ_id: str, said: str) -> None:
        data = full_document(trace=hop(organ_id=organ_id))
        w = only_warning(data)
        assert where(w) == (
            "trace-organ-id-missing",
            line_of(data, "<edXML:TraceHeader>"),  # the hop is one line
            f"{TRACE}/TraceHeader/OrganId",
        )
        assert said in w.message

    def test_a_hop_without_organ_id(self) -> None:
        data = full_document(trace=hop("000.00.00.H35") + hop(organ_id=None))
        w = only_warning(data)
        assert where(w) == ("trace-organ-id-missing", line_of(data, "<edXML:TraceHeader>"),
                            f"{TRACE}/TraceHeader[2]")  # fmt: skip
        assert "missing" in w.message

    @pytest.mark.parametrize(
        ("timestamp", "said"),
        [
            ("2026-11-20T08:00:00", "is not a timestamp"),
            ("2026/02/30 08:00:00", "is not a calendar time"),
            ("", "empty"),
        ],
    )
    def test_a_hop_without_a_usable_time(self, timestamp: str, said: str) -> None:
        data = full_document(trace=hop(timestamp=timestamp))
        w = only_warning(data)
        assert where(w) == (
            "trace-timestamp-invalid",
            line_of(data, "<edXML:Timestamp>"),
            f"{TRACE}/TraceHeader/Timestamp",
        )
        assert said in w.message

    def test_a_hop_without_timestamp(self) -> None:
        w = only_warning(full_document(trace=hop(timestamp=None)))
        assert w.code == "trace-timestamp-invalid" and "missing" in w.message
        assert w.location is not None and w.location.path == f"{TRACE}/TraceHeader"

    def test_the_view_keeps_every_hop(self) -> None:
        data = full_document(trace=hop("null") + hop("", "late") + hop())
        env = verdict(data).envelope
        assert env is not None
        assert env.trace == (
            TraceHeader("null", datetime(2026, 11, 20, 8)),
            TraceHeader("", None),
            TraceHeader("000.00.00.H35", datetime(2026, 11, 20, 8)),
        )

    def test_two_organ_ids_in_one_hop_stay_a_problem(self) -> None:
        v = verdict(full_document(trace=hop().replace("<edXML:Timestamp>", STRAY_ORGAN)))
        assert [p.code for p in v.problems] == ["duplicate-field"]


class TestElementOrder:
    def test_business_before_the_trace_headers(self) -> None:
        data = full_document(trace=BUSINESS + hop() + hop("000.99.99.H35"))
        w = only_warning(data)  # once per block, at the first hop that comes too late
        assert where(w) == (
            "element-order",
            line_of(data, "<edXML:TraceHeader>"),
            f"{TRACE}/TraceHeader[1]",
        )
        assert "TraceHeader comes after Bussiness" in w.message

    def test_trace_list_before_the_message_header(self) -> None:
        data = full_document()
        start = data.index(b"<edXML:TraceHeaderList>")
        trace_list = data[start : data.index(b"</edXML:edXMLHeader>")]
        moved = data.replace(trace_list, b"").replace(
            b"<edXML:edXMLHeader>", b"<edXML:edXMLHeader>" + trace_list
        )
        w = only_warning(moved)
        assert where(w)[::2] == ("element-order", f"{HEADER}/MessageHeader")

    def test_attachments_before_the_envelope(self) -> None:
        data = full_document()
        attachments = data[data.index(b"<AttachmentEncoded>") : data.index(b"\n</edXML>")]
        moved = data.replace(attachments, b"").replace(
            b"<edXML:edXMLEnvelope", attachments + b"<edXML:edXMLEnvelope", 1
        )
        w = only_warning(moved)
        assert where(w)[::2] == ("element-order", "/edXML/edXMLEnvelope")

    def test_the_standard_order_is_quiet(self) -> None:
        """Free order inside blocks is quiet too (test_validator.py, reordered From)."""
        assert verdict(full_document(business=BUSINESS)).warnings == ()


class TestUnknownElements:
    @pytest.mark.parametrize(
        ("vendor", "path", "says"),
        [
            (
                "<edXML:Author>Nguyễn Văn A</edXML:Author>",
                f"{HEADER}/MessageHeader/Author",
                "edXML:Author is not an element of the schema",
            ),
            (
                "<edXML:VendorInfo><edXML:Ver>2</edXML:Ver><v:x xmlns:v='urn:v'/>"
                "</edXML:VendorInfo>",
                f"{HEADER}/MessageHeader/VendorInfo",  # the outermost only
                "edXML:VendorInfo is not an element of the schema",
            ),
            (
                "<edXML:Priority>1</edXML:Priority>",  # known, but belongs in OtherInfo
                f"{HEADER}/MessageHeader/Priority",
                "edXML:Priority is not expected in MessageHeader",
            ),
        ],
    )
    def test_in_the_message_header(self, vendor: str, path: str, says: str) -> None:
        data = full_document(extra_header=vendor)
        w = only_warning(data)
        assert where(w) == ("unknown-element", line_of(data, vendor), path)
        assert says in w.message and "{" not in w.message

    def test_in_other_blocks(self) -> None:
        data = full_document(
            trace=hop().replace(
                "<edXML:Timestamp>", "<edXML:Node>n1</edXML:Node><edXML:Timestamp>"
            ),
            extra_root="<Checksum>ab</Checksum>",
        ).replace(b"<ContentType>", b"<Size>12</Size><ContentType>")
        v = verdict(data)
        assert v.ok, v.problems
        assert [(w.code, w.location.path) for w in v.warnings] == [  # type: ignore[union-attr]
            ("unknown-element", f"{TRACE}/TraceHeader/Node"),
            ("unknown-element", "/edXML/AttachmentEncoded/Attachment/Size"),
            ("unknown-element", "/edXML/Checksum"),
        ]

    def test_in_a_status(self) -> None:
        data = status().replace(
            b"<edXML:StatusCode>", b"<edXML:Note>x</edXML:Note><edXML:StatusCode>"
        )
        w = only_warning(data)
        assert where(w)[::2] == ("unknown-element", f"{HEADER}/MessageHeader/Note")

    def test_the_rest_of_the_package_is_still_checked(self) -> None:
        """A tolerated element hides nothing: the schema checks what remains."""
        v = verdict(full_document(extra_header="<edXML:Author>x</edXML:Author>", priority="9"))
        assert [p.code for p in v.problems] == ["invalid-value"]
        assert [w.code for w in v.warnings] == ["unknown-element"]

    def test_open_blocks_and_other_namespaces_are_not_irregular(self) -> None:
        v = verdict(
            full_document(
                extra_header="<edXML:ResponseForTask><edXML:Anything/></edXML:ResponseForTask>"
                '<v:Extra xmlns:v="urn:vendor"><edXML:Inside/></v:Extra>'
            )
        )
        assert v.ok and v.warnings == (), (v.problems, v.warnings)

    @pytest.mark.parametrize(
        ("data", "path", "says"),
        [
            (
                document().replace(
                    b"</edXML:From>", b"<edXML:Vendor>x</edXML:Vendor></edXML:From>"
                ),
                f"{HEADER}/MessageHeader/From/Vendor",
                "inside From, which routing reads",
            ),
            (
                document().replace(b"</edXML:To>", b"<edXML:Subject>x</edXML:Subject></edXML:To>"),
                f"{HEADER}/MessageHeader/To/Subject",
                "inside To",
            ),
            (
                status().replace(b"</edXML:ResponseFor>", b"<edXML:X/></edXML:ResponseFor>"),
                f"{HEADER}/MessageHeader/ResponseFor/X",
                "inside ResponseFor",
            ),
            (
                full_document(
                    business=BUSINESS.replace("</edXML:Bussiness>", "<edXML:X/></edXML:Bussiness>")
                ),
                f"{TRACE}/Bussiness/X",
                "inside Bussiness",
            ),
            (
                full_document(extra_header="<edXML:OrganId>000.00.09.H35</edXML:OrganId>"),
                f"{HEADER}/MessageHeader/OrganId",
                "a field routing or trust reads, out of its place",
            ),
            (
                full_document().replace(
                    b"<edXML:Priority>", b"<edXML:To>x</edXML:To><edXML:Priority>"
                ),
                f"{HEADER}/MessageHeader/OtherInfo/To",
                "out of its place",
            ),
            (
                full_document(extra_root="<Extra><Signature/></Extra>"),
                "/edXML/Extra",
                "holds edXML:Signature",
            ),
            (
                full_document(
                    extra_header="<edXML:Old><edXML:DocumentId>D,2</edXML:DocumentId></edXML:Old>"
                ),
                f"{HEADER}/MessageHeader/Old",
                "holds edXML:DocumentId",
            ),
        ],
        ids=[
            "in-From",
            "in-To",
            "in-ResponseFor",
            "in-Bussiness",
            "OrganId",
            "To",
            "Signature",
            "DocumentId",
        ],
    )
    def test_where_routing_or_trust_reads_it_stays_refused(
        self, data: bytes, path: str, says: str
    ) -> None:
        v = verdict(data)
        assert [(p.code, p.location.path) for p in v.problems] == [  # type: ignore[union-attr]
            ("schema-invalid", path)
        ]
        assert says in v.problems[0].message
        assert v.problems[0].location.line is not None  # type: ignore[union-attr]
        assert v.warnings == ()

    def test_inside_a_value_stays_refused(self) -> None:
        """An element inside a text value is not an extension but a broken value."""
        data = document().replace(b"</edXML:Subject>", b"<edXML:b>!</edXML:b></edXML:Subject>")
        (p,) = verdict(data).problems
        assert p.code == "schema-invalid" and "Subject" in p.message


class TestSchemaIndex:
    def test_read_from_the_schema(self) -> None:
        index = schema_index()
        assert index.children["TraceHeader"] == {"OrganId", "Timestamp"}
        assert {"From", "To", "DocumentId", "StatusCode"} <= index.children["MessageHeader"]
        assert {"Signature", "ReplyFors", "ResponseForTask"} <= index.open
        assert "OrganId" not in index.children  # a value, not a container
        assert "Author" not in index.declared


class TestVerdict:
    def test_strict_turns_every_warning_into_a_problem_in_document_order(self) -> None:
        data = full_document(
            trace=BUSINESS + "\n" + hop("null"), extra_header="<edXML:Author>x</edXML:Author>"
        )
        v = verdict(data)
        assert [w.code for w in v.warnings] == [
            "unknown-element",
            "trace-organ-id-missing",  # a hop on one line: its two warnings share it
            "element-order",
        ]
        assert [p.code for p in v.strict().problems] == [w.code for w in v.warnings]

    def test_a_regular_package_is_its_own_strict_verdict(self) -> None:
        v = verdict(full_document())
        assert v.warnings == () and v.strict() is v


class TestCatalogue:
    """Every warning code is documented where agency systems read the contract."""

    def test_readme_and_openapi_name_every_warning_code(self) -> None:
        root = Path(__file__).resolve().parents[2]
        readme = (root / "README.md").read_text(encoding="utf-8")
        section = readme.split("### Warnings", 1)[1].split("\n\n", 3)[2]  # the table
        documented = re.findall(r"^\| `([a-z-]+)` \|", section, re.M)
        assert documented == list(WARNING_TYPES)
        spec = yaml.safe_load((root / "schemas" / "openapi.yaml").read_text(encoding="utf-8"))
        enum = spec["components"]["schemas"]["Warning"]["properties"]["code"]["enum"]
        assert enum == list(WARNING_TYPES)

    def test_a_strict_sender_is_refused_under_each_warning_code(self) -> None:
        for code, warning in WARNING_TYPES.items():
            assert PROBLEM_TYPES[code].http_status == 422
            assert PROBLEM_TYPES[code].title == warning.title
