"""Building packages: build -> parse gives the same view (property-based), every
status code, trace headers, and the literal `edXML:` prefix receivers look for."""

from __future__ import annotations

import dataclasses
import string
from datetime import date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.clock import utc_now
from broker.edxml.builder import append_trace_header, build_envelope, build_status
from broker.edxml.model import (
    Attachment,
    Business,
    BusinessKind,
    DocumentCode,
    DocumentType,
    Envelope,
    Kind,
    Organization,
    OtherInfo,
    Priority,
    Promulgation,
    ReceiverChange,
    Replacement,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusCode,
    TraceHeader,
)
from broker.edxml.validator import EnvelopeValidator
from tests.edxml_samples import full_document

V = EnvelopeValidator(clock=utc_now)
TODAY = date(2030, 1, 1)

# Text as senders write it: Vietnamese letters, digits, punctuation; no surrounding space
# (values are read stripped) and only characters XML 1.0 can carry.
_ALPHABET = (
    string.ascii_letters
    + string.digits
    + " .,/-_()&<>'\""
    + "ăâđêôơưĂÂĐÊÔƠƯáàảãạếềểễệốồổỗộớờởỡợứừửữựÁÀẢÃẠ"
)
text = st.text(_ALPHABET, min_size=1, max_size=40).map(str.strip).filter(bool)
maybe_text = st.one_of(st.just(""), text)
code_id = st.from_regex(r"\A[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}\Z")
dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2029, 12, 31))
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2029, 12, 31)).map(
    lambda d: d.replace(microsecond=0)
)
counts = st.one_of(st.none(), st.integers(0, 9999))

organizations = st.builds(
    Organization,
    organ_id=code_id,
    organ_name=maybe_text,
    organization_in_charge=maybe_text,
    address=maybe_text,
    email=maybe_text,
    telephone=maybe_text,
    fax=maybe_text,
    website=maybe_text,
)
staff = st.one_of(
    st.none(),
    st.builds(
        StaffInfo, department=maybe_text, staff=maybe_text, email=maybe_text, mobile=maybe_text
    ),
)
response_fors = st.builds(
    ResponseFor,
    organ_id=code_id,
    document_id=text,
    code=maybe_text,
    promulgation_date=st.one_of(st.none(), dates),
)


@st.composite
def attachments(draw: st.DrawFn) -> tuple[tuple[Attachment, ...], dict[str, bytes]]:
    n = draw(st.integers(0, 3))
    found: list[Attachment] = []
    payloads: dict[str, bytes] = {}
    for i in range(n):
        data = draw(st.binary(max_size=300))
        cid = f"cid:{i}-{draw(st.integers(0, 10**6))}"
        payloads[cid] = data
        found.append(
            Attachment(
                content_id=cid,
                name=draw(maybe_text),
                description=draw(maybe_text),
                content_type=draw(st.sampled_from(["", "application/pdf", "application/zip"])),
                decoded_size=len(data),
            )
        )
    return tuple(found), payloads


@st.composite
def businesses(draw: st.DrawFn) -> Business | None:
    kind = draw(st.one_of(st.none(), st.sampled_from(BusinessKind)))
    if kind is None:
        return None
    replacements: tuple[Replacement, ...] = ()
    if kind is BusinessKind.REPLACEMENT:
        replacements = tuple(
            draw(
                st.lists(
                    st.builds(
                        Replacement,
                        document_id=text,
                        organ_ids=st.lists(code_id, max_size=3).map(tuple),
                    ),
                    min_size=1,
                    max_size=3,
                )
            )
        )
    changes = tuple(
        draw(st.lists(st.builds(ReceiverChange, organ_id=code_id, added=st.booleans()), max_size=3))
    )
    return Business(
        kind=kind,
        document_id=draw(text) if kind is BusinessKind.UPDATE else draw(maybe_text),
        reason=draw(maybe_text),
        paper=draw(st.one_of(st.none(), st.booleans())),
        document_info_changed=draw(st.one_of(st.none(), st.booleans())),
        receivers_changed=draw(st.one_of(st.none(), st.booleans())),
        receiver_changes=changes,
        replacements=replacements,
        staff=draw(staff),
    )


@st.composite
def documents(draw: st.DrawFn) -> tuple[Envelope, dict[str, bytes]]:
    atts, payloads = draw(attachments())
    recipients = draw(
        st.lists(organizations, min_size=1, max_size=4, unique_by=lambda o: o.organ_id)
    )
    env = Envelope(
        kind=Kind.DOCUMENT,
        sender=draw(organizations),
        recipients=tuple(recipients),
        document_id=draw(text),
        code=DocumentCode(draw(text), draw(maybe_text)),
        promulgation=draw(
            st.one_of(
                st.none(),
                st.builds(Promulgation, place=maybe_text, date=st.one_of(st.none(), dates)),
            )
        ),
        document_type=draw(
            st.one_of(
                st.none(), st.builds(DocumentType, type=counts, detail=counts, name=maybe_text)
            )
        ),
        subject=draw(maybe_text),
        content=draw(maybe_text),
        signer=draw(
            st.one_of(
                st.none(),
                st.builds(
                    SignerInfo, competence=maybe_text, position=maybe_text, full_name=maybe_text
                ),
            )
        ),
        due_date=draw(st.one_of(st.none(), dates)),
        to_places=tuple(draw(st.lists(text, max_size=3))),
        other=draw(
            st.one_of(
                st.none(),
                st.builds(
                    OtherInfo,
                    priority=st.sampled_from(Priority),
                    sphere_of_promulgation=maybe_text,
                    typer_notation=maybe_text,
                    promulgation_amount=counts,
                    page_amount=counts,
                    direction=st.one_of(st.none(), st.booleans()),
                    appendixes=st.lists(text, max_size=3).map(tuple),
                ),
            )
        ),
        steering_type=draw(counts),
        response_for=tuple(draw(st.lists(response_fors, max_size=2))),
        trace=tuple(
            draw(st.lists(st.builds(TraceHeader, organ_id=code_id, timestamp=times), max_size=3))
        ),
        business=draw(businesses()),
        attachments=atts,
    )
    return env, payloads


statuses = st.builds(
    Envelope,
    kind=st.just(Kind.STATUS),
    sender=organizations,
    response_for=response_fors.map(lambda r: (r,)),
    staff=staff,
    status_code=st.sampled_from(StatusCode),
    status_description=maybe_text,
    status_timestamp=st.one_of(st.none(), times),
    status_form=st.sampled_from(["MessageHeader", "Status"]),
    trace=st.lists(st.builds(TraceHeader, organ_id=code_id, timestamp=times), max_size=2).map(
        tuple
    ),
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class TestRoundTrip:
    @SETTINGS
    @given(documents())
    def test_document_build_then_parse_gives_the_same_view(
        self, case: tuple[Envelope, dict[str, bytes]]
    ) -> None:
        env, payloads = case
        verdict = V.validate(build_envelope(env, payloads), today=TODAY)
        assert verdict.problems == () and verdict.warnings == ()
        assert verdict.envelope == env

    @SETTINGS
    @given(statuses)
    def test_status_build_then_parse_gives_the_same_view(self, env: Envelope) -> None:
        verdict = V.validate(build_envelope(env), today=TODAY)
        assert verdict.problems == () and verdict.warnings == ()
        assert verdict.envelope == env

    @SETTINGS
    @given(documents(), st.lists(st.tuples(code_id, times), min_size=1, max_size=3))
    def test_appending_trace_headers_changes_nothing_else(
        self, case: tuple[Envelope, dict[str, bytes]], hops: list[tuple[str, datetime]]
    ) -> None:
        env, payloads = case
        data = build_envelope(env, payloads)
        for organ_id, ts in hops:
            data = append_trace_header(data, organ_id, ts)
        verdict = V.validate(data, today=TODAY)
        assert verdict.problems == () and verdict.warnings == ()
        added = tuple(TraceHeader(o, t) for o, t in hops)
        assert verdict.envelope == dataclasses.replace(env, trace=env.trace + added)


class TestStatusBuilder:
    @pytest.mark.parametrize("code", list(StatusCode))
    def test_every_status_code_answers_the_document(self, code: StatusCode) -> None:
        doc = V.validate(full_document(), today=TODAY).envelope
        assert doc is not None
        me = Organization("000.00.01.H35", "Sở Nội vụ")
        data = build_status(doc, code, sender=me, timestamp=datetime(2026, 11, 24, 9, 30))
        status = V.validate(data, today=TODAY)
        assert status.problems == ()
        env = status.envelope
        assert env is not None and env.kind is Kind.STATUS
        assert env.status_code is code
        assert env.recipient_ids == (doc.sender_id,)
        assert env.response_for[0].document_id == doc.document_id
        assert env.response_for[0].code == str(doc.code)
        assert env.status_description == code.meaning
        assert f"<edXML:StatusCode>{code.value}</edXML:StatusCode>".encode() in data


class TestSerialisation:
    def test_edxml_prefix_and_sdk_shape(self) -> None:
        doc = V.validate(full_document(attachments={"cid:1": b"x"}), today=TODAY).envelope
        assert doc is not None
        data = build_envelope(doc, {"cid:1": b"x"})
        assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<edXML xmlns="')
        assert b'<edXML:edXMLEnvelope xmlns:edXML="' in data
        assert b"<edXML:MessageHeader>" in data and b"<edXML:From>" in data
        assert b"<AttachmentEncoded>" in data and b"<Attachment>" in data
        assert b'<edXML:ContentTransferEncoded xmlns:edXML="' in data

    def test_trace_header_goes_after_the_existing_ones_and_before_business(self) -> None:
        business = (
            "<edXML:Bussiness><edXML:BussinessDocType>0</edXML:BussinessDocType></edXML:Bussiness>"
        )
        data = append_trace_header(
            full_document(business=business), "000.00.00.H35", datetime(2026, 11, 24, 10, 0, 0)
        )
        first = data.index(b"2026/11/20 08:00:00")
        mine = data.index(b"2026/11/24 10:00:00")
        assert first < mine < data.index(b"<edXML:Bussiness>")

    def test_trace_list_is_created_when_absent(self) -> None:
        status = build_envelope(
            Envelope(
                kind=Kind.STATUS,
                sender=Organization("A.1"),
                response_for=(ResponseFor("B.2", "D,1"),),
                status_code=StatusCode.RECEIVED,
            )
        )
        data = append_trace_header(status, "X.9", datetime(2026, 1, 2, 3, 4, 5))
        env = V.check(data)
        assert env.trace == (TraceHeader("X.9", datetime(2026, 1, 2, 3, 4, 5)),)
