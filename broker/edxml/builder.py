"""Building edXML packages: status packages, trace headers, whole envelopes.

Output follows the official SDK's shape, which receivers that match literal
tags expect: the root declares the edXML namespace as default, the envelope
re-declares it with the `edXML:` prefix and every header and body element
carries that prefix; attachment fields beside the envelope are unprefixed and
ContentTransferEncoded declares its own `edXML:` prefix. Elements are written
in the standard's order. `build_envelope` then `EnvelopeValidator.validate`
gives back the same view (tests/unit/test_edxml_roundtrip.py).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, date, datetime

from lxml import etree

from broker.edxml.model import (
    Business,
    Envelope,
    Kind,
    Organization,
    OtherInfo,
    ResponseFor,
    StaffInfo,
    StatusCode,
)
from broker.edxml.ns import NS, PREFIX, q
from broker.edxml.parser import parse_untrusted
from broker.edxml.reader import child, children
from broker.edxml.validator import VIETNAM

DATE = "%Y/%m/%d"
TIMESTAMP = "%Y/%m/%d %H:%M:%S"


def vietnam_time(at: datetime) -> datetime:
    """An aware time as the standard writes timestamps: Vietnam, naive, to the second."""
    return (at.astimezone(UTC) + VIETNAM).replace(tzinfo=None, microsecond=0)


def _sub(parent: etree._Element, name: str, value: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, q(name))
    if value is not None:
        el.text = value
    return el


def _opt(parent: etree._Element, name: str, value: str) -> None:
    if value:
        _sub(parent, name, value)


def _date(value: date | None) -> str:
    return value.strftime(DATE) if value else ""


def _organization(parent: etree._Element, name: str, org: Organization) -> None:
    el = _sub(parent, name)
    _sub(el, "OrganId", org.organ_id)
    _opt(el, "OrganizationInCharge", org.organization_in_charge)
    _opt(el, "OrganName", org.organ_name)
    _opt(el, "OrganAdd", org.address)
    _opt(el, "Email", org.email)
    _opt(el, "Telephone", org.telephone)
    _opt(el, "Fax", org.fax)
    _opt(el, "Website", org.website)


def _staff(parent: etree._Element, staff: StaffInfo | None) -> None:
    if staff is None:
        return
    el = _sub(parent, "StaffInfo")
    _opt(el, "Department", staff.department)
    _opt(el, "Staff", staff.staff)
    _opt(el, "Email", staff.email)
    _opt(el, "Mobile", staff.mobile)


def _response_for(parent: etree._Element, rf: ResponseFor) -> None:
    el = _sub(parent, "ResponseFor")
    _sub(el, "OrganId", rf.organ_id)
    _opt(el, "Code", rf.code)
    _opt(el, "PromulgationDate", _date(rf.promulgation_date))
    _sub(el, "DocumentId", rf.document_id)


def _number(value: int | None) -> str:
    return "" if value is None else str(value)


def _other(parent: etree._Element, other: OtherInfo) -> None:
    el = _sub(parent, "OtherInfo")
    _sub(el, "Priority", str(int(other.priority)))
    _opt(el, "SphereOfPromulgation", other.sphere_of_promulgation)
    _opt(el, "TyperNotation", other.typer_notation)
    _opt(el, "PromulgationAmount", _number(other.promulgation_amount))
    _opt(el, "PageAmount", _number(other.page_amount))
    if other.direction is not None:
        _sub(el, "Direction", "true" if other.direction else "false")
    if other.appendixes:
        apps = _sub(el, "Appendixes")
        for a in other.appendixes:
            _sub(apps, "Appendix", a)


def _flag(parent: etree._Element, name: str, value: bool | None) -> None:
    if value is not None:
        _sub(parent, name, "1" if value else "0")


def _business(parent: etree._Element, b: Business) -> None:
    el = _sub(parent, "Bussiness")
    _opt(el, "DocumentId", b.document_id)
    _sub(el, "BussinessDocType", str(int(b.kind)))
    _opt(el, "BussinessDocReason", b.reason)
    _flag(el, "Paper", b.paper)
    if b.receiver_changes or b.document_info_changed is not None or b.receivers_changed is not None:
        info = _sub(el, "BussinessDocumentInfo")
        _flag(info, "DocumentInfo", b.document_info_changed)
        _flag(info, "DocumentReceiver", b.receivers_changed)
        if b.receiver_changes:
            lst = _sub(info, "ReceiverList")
            for change in b.receiver_changes:
                rec = _sub(lst, "Receiver")
                _sub(rec, "OrganId", change.organ_id)
                _sub(rec, "ReceiverType", "1" if change.added else "0")
    if b.replacements:
        lst = _sub(el, "ReplacementInfoList")
        for r in b.replacements:
            info = _sub(lst, "ReplacementInfo")
            _sub(info, "DocumentId", r.document_id)
            if r.organ_ids:
                ids = _sub(info, "OrganIdList")
                for organ_id in r.organ_ids:
                    _sub(ids, "OrganId", organ_id)
    _staff(el, b.staff)


def _message_header(header: etree._Element, env: Envelope) -> None:
    m = _sub(header, env.status_form if env.kind is Kind.STATUS else "MessageHeader")
    _organization(m, "From", env.sender)
    if env.kind is Kind.STATUS:
        for rf in env.response_for:
            _response_for(m, rf)
        _staff(m, env.staff)
        _sub(m, "StatusCode", env.status_code.value if env.status_code else "")
        _opt(m, "Description", env.status_description)
        if env.status_timestamp is not None:
            _sub(m, "Timestamp", env.status_timestamp.strftime(TIMESTAMP))
        return
    for to in env.recipients:
        _organization(m, "To", to)
    _sub(m, "DocumentId", env.document_id)
    if env.code is not None:
        code = _sub(m, "Code")
        _opt(code, "CodeNumber", env.code.number)
        _opt(code, "CodeNotation", env.code.notation)
    if env.promulgation is not None:
        p = _sub(m, "PromulgationInfo")
        _opt(p, "Place", env.promulgation.place)
        _opt(p, "PromulgationDate", _date(env.promulgation.date))
    if env.document_type is not None:
        t = _sub(m, "DocumentType")
        _opt(t, "Type", _number(env.document_type.type))
        _opt(t, "TypeDetail", _number(env.document_type.detail))
        _opt(t, "TypeName", env.document_type.name)
    _opt(m, "Subject", env.subject)
    _opt(m, "Content", env.content)
    if env.signer is not None:
        s = _sub(m, "SignerInfo")
        _opt(s, "Competence", env.signer.competence)
        _opt(s, "Position", env.signer.position)
        _opt(s, "FullName", env.signer.full_name)
    _opt(m, "DueDate", _date(env.due_date))
    if env.other is not None:
        _other(m, env.other)
    _opt(m, "SteeringType", _number(env.steering_type))
    if env.to_places:
        places = _sub(m, "ToPlaces")
        for place in env.to_places:
            _sub(places, "Place", place)
    for rf in env.response_for:
        _response_for(m, rf)
    _staff(m, env.staff)


def build_envelope(env: Envelope, payloads: Mapping[str, bytes] | None = None) -> bytes:
    """The package of a view; `payloads` gives each attachment's bytes by ContentId."""
    payloads = payloads or {}
    root = etree.Element(q("edXML"), nsmap={None: NS})
    envelope = etree.SubElement(root, q("edXMLEnvelope"), nsmap={PREFIX: NS})
    header = _sub(envelope, "edXMLHeader")
    _message_header(header, env)
    if env.trace or env.business is not None:
        trace = _sub(header, "TraceHeaderList")
        for hop in env.trace:
            th = _sub(trace, "TraceHeader")
            _sub(th, "OrganId", hop.organ_id)
            _opt(th, "Timestamp", hop.timestamp.strftime(TIMESTAMP) if hop.timestamp else "")
        if env.business is not None:
            _business(trace, env.business)
    if env.attachments:
        manifest = _sub(_sub(envelope, "edXMLBody"), "edXMLManifest")
        manifest.set("version", "1.0")
        encoded = etree.SubElement(root, q("AttachmentEncoded"))
        for a in env.attachments:
            ref = _sub(manifest, "Reference")
            _sub(ref, "ContentId", a.content_id)
            _opt(ref, "ContentType", a.content_type)
            _opt(ref, "Description", a.description)
            _opt(ref, "AttachmentName", a.name)
            if a.decoded_size is None:
                continue
            att = etree.SubElement(encoded, q("Attachment"))
            etree.SubElement(att, q("ContentId")).text = a.content_id
            for name, value in (
                ("AttachmentName", a.name),
                ("Description", a.description),
                ("ContentType", a.content_type),
            ):
                if value:
                    etree.SubElement(att, q(name)).text = value
            payload = payloads.get(a.content_id, b"\0" * a.decoded_size)
            etree.SubElement(
                att, q("ContentTransferEncoded"), nsmap={PREFIX: NS}
            ).text = base64.b64encode(payload).decode("ascii")
        if not len(encoded):
            root.remove(encoded)
    etree.indent(root, space="  ")
    return serialize(root)


def build_status(
    document: Envelope,
    code: StatusCode,
    *,
    sender: Organization,
    description: str = "",
    staff: StaffInfo | None = None,
    timestamp: datetime,
) -> bytes:
    """A status package from `sender` answering `document` (to its sender), made at
    `timestamp` (the standard's form: Vietnam time, naive)."""
    promulgation = document.promulgation.date if document.promulgation else None
    answered = ResponseFor(
        organ_id=document.sender_id,
        document_id=document.document_id,
        code=str(document.code) if document.code else "",
        promulgation_date=promulgation,
    )
    return build_status_for(
        answered, code, sender=sender, description=description, staff=staff, timestamp=timestamp
    )


def build_status_for(
    answered: ResponseFor,
    code: StatusCode,
    *,
    sender: Organization,
    description: str = "",
    staff: StaffInfo | None = None,
    timestamp: datetime,
) -> bytes:
    """A status package from `sender` about the document `answered` names."""
    status = Envelope(
        kind=Kind.STATUS,
        sender=sender,
        response_for=(answered,),
        staff=staff,
        status_code=code,
        status_description=description or code.meaning,
        status_timestamp=timestamp,
    )
    return build_envelope(status)


def append_trace_header(data: bytes, organ_id: str, timestamp: datetime) -> bytes:
    """The package with one more TraceHeader (this hop), after the existing ones.

    `data` must already have passed validation (it is parsed with the hardened parser
    again here, so a caller cannot slip unchecked bytes through).
    """
    root = parse_untrusted(data).getroot()
    add_trace_header(root, organ_id, timestamp)
    return serialize(root)


def add_trace_header(root: etree._Element, organ_id: str, timestamp: datetime) -> None:
    """Append a TraceHeader to a parsed package, creating TraceHeaderList if needed."""
    header = child(child(root, "edXMLEnvelope"), "edXMLHeader")
    if header is None:
        raise ValueError("the package has no edXMLHeader")
    trace = child(header, "TraceHeaderList")
    if trace is None:
        message = child(header, "MessageHeader")
        if message is None:
            message = child(header, "Status")
        trace = etree.Element(q("TraceHeaderList"))
        if message is not None:
            message.addnext(trace)
        else:
            header.insert(0, trace)
    hop = etree.Element(q("TraceHeader"))
    etree.SubElement(hop, q("OrganId")).text = organ_id
    etree.SubElement(hop, q("Timestamp")).text = timestamp.strftime(TIMESTAMP)
    existing = children(trace, "TraceHeader")
    if existing:
        existing[-1].addnext(hop)
    else:
        trace.insert(0, hop)


XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def serialize(root: etree._Element) -> bytes:
    """UTF-8 with the declaration in the double-quoted form senders use."""
    return XML_DECLARATION + etree.tostring(root, encoding="UTF-8", xml_declaration=False)
