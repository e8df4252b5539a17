"""Reading a parsed edXML tree into an `Envelope`, leniently.

Absent optional parts read as empty values; values that cannot become domain
values (a calendar-impossible date, undecodable base64) are reported as
problems with their location. Which parts are *required* is decided by the
rules (rules.py), not here.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from datetime import date, datetime

from lxml import etree

from broker.core.problems import Location, Problem
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
    SignatureInfo,
    SignerInfo,
    StaffInfo,
    StatusCode,
    TraceHeader,
)
from broker.edxml.ns import DSIG_NS, NS, element_path, q

_ISO_DATE = re.compile(r"^(\d{4})/(\d{2})/(\d{2})$")
_VN_DATE = re.compile(r"^(\d{2})/(\d{2})/(\d{4})$")  # dd/MM/yyyy, as BKAV sends it
_TIMESTAMP = re.compile(r"^(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})$")
_WHITESPACE = b" \t\r\n"


def location(el: etree._Element) -> Location:
    return Location(line=el.sourceline, path=element_path(el))


def child(el: etree._Element | None, name: str) -> etree._Element | None:
    """The first child element of that edXML name (iterchildren matches the tag in C;
    find() parses a path first: reading a package calls this some fifty times)."""
    return next(el.iterchildren(q(name)), None) if el is not None else None


def children(el: etree._Element | None, name: str) -> list[etree._Element]:
    return list(el.iterchildren(q(name))) if el is not None else []


def text(el: etree._Element | None) -> str:
    """The element's text, stripped. Comments and processing instructions inside it
    are skipped, not cut at: `H3<!---->5` reads `H35`, as canonical XML (and so
    a signature) sees it."""
    if el is None:
        return ""
    if len(el) == 0:
        return (el.text or "").strip()
    return "".join(el.itertext()).strip()


def parse_timestamp(raw: str) -> tuple[datetime | None, str]:
    """`raw` as a timestamp, or None and why not."""
    m = _TIMESTAMP.match(raw)
    if m is None:
        return None, f"{raw!r} is not a timestamp (yyyy/MM/dd HH:mm:ss)"
    try:
        return datetime(*(int(g) for g in m.groups())), ""  # type: ignore[misc]
    except ValueError:
        return None, f"{raw!r} is not a calendar time"


@dataclass
class Parts:
    """Elements of the package that more than one step looks at."""

    root: etree._Element
    envelope: etree._Element | None = None
    header: etree._Element | None = None
    message: etree._Element | None = None  # MessageHeader or Status
    body: etree._Element | None = None
    references: list[etree._Element] = field(default_factory=list)
    encoded: list[etree._Element] = field(default_factory=list)

    @classmethod
    def of(cls, root: etree._Element) -> Parts:
        parts = cls(root)
        parts.envelope = child(root, "edXMLEnvelope")
        parts.header = child(parts.envelope, "edXMLHeader")
        parts.message = child(parts.header, "MessageHeader")
        if parts.message is None:
            parts.message = child(parts.header, "Status")
        parts.body = child(parts.envelope, "edXMLBody")
        parts.references = children(child(parts.body, "edXMLManifest"), "Reference")
        parts.encoded = children(child(root, "AttachmentEncoded"), "Attachment")
        return parts


class _Reader:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, code: str, message: str, el: etree._Element) -> None:
        self.problems.append(Problem(code, message, location(el)))

    def promulgation(self, el: etree._Element | None) -> Promulgation | None:
        if el is None:
            return None
        return Promulgation(
            place=text(child(el, "Place")), date=self.date(child(el, "PromulgationDate"))
        )

    def document_type(self, el: etree._Element | None) -> DocumentType | None:
        if el is None:
            return None
        return DocumentType(
            type=self.integer(child(el, "Type")),
            detail=self.integer(child(el, "TypeDetail")),
            name=text(child(el, "TypeName")),
        )

    def date(self, el: etree._Element | None) -> date | None:
        raw = text(el)
        if not raw or el is None:
            return None
        m = _ISO_DATE.match(raw)
        parts = (m.group(1), m.group(2), m.group(3)) if m else None
        if parts is None and (m := _VN_DATE.match(raw)):
            parts = (m.group(3), m.group(2), m.group(1))
        if parts is None:
            self.problem("invalid-date", f"{raw!r} is not a date (yyyy/MM/dd)", el)
            return None
        try:
            return date(int(parts[0]), int(parts[1]), int(parts[2]))
        except ValueError:
            self.problem("invalid-date", f"{raw!r} is not a calendar date", el)
            return None

    def timestamp(self, el: etree._Element | None) -> datetime | None:
        raw = text(el)
        if not raw or el is None:
            return None
        when, wrong = parse_timestamp(raw)
        if wrong:
            self.problem("invalid-date", wrong, el)
        return when

    def integer(self, el: etree._Element | None) -> int | None:
        raw = text(el)
        if not raw or el is None:
            return None
        try:
            return int(raw)
        except ValueError:
            self.problem("invalid-value", f"{raw!r} is not a whole number", el)
            return None

    def boolean(self, el: etree._Element | None) -> bool | None:
        raw = text(el).lower()
        if not raw:
            return None
        if raw in ("true", "1"):
            return True
        if raw in ("false", "0"):
            return False
        assert el is not None
        self.problem("invalid-value", f"{raw!r} is not true or false", el)
        return None

    def organization(self, el: etree._Element) -> Organization:
        return Organization(
            organ_id=text(child(el, "OrganId")),
            organ_name=text(child(el, "OrganName")),
            organization_in_charge=text(child(el, "OrganizationInCharge")),
            address=text(child(el, "OrganAdd")),
            email=text(child(el, "Email")),
            telephone=text(child(el, "Telephone")),
            fax=text(child(el, "Fax")),
            website=text(child(el, "Website")),
        )

    def staff(self, el: etree._Element | None) -> StaffInfo | None:
        if el is None:
            return None
        return StaffInfo(
            department=text(child(el, "Department")),
            staff=text(child(el, "Staff")),
            email=text(child(el, "Email")),
            mobile=text(child(el, "Mobile")),
        )

    def response_for(self, el: etree._Element) -> ResponseFor:
        return ResponseFor(
            organ_id=text(child(el, "OrganId")),
            document_id=text(child(el, "DocumentId")),
            code=text(child(el, "Code")),
            promulgation_date=self.date(child(el, "PromulgationDate")),
        )

    def other(self, el: etree._Element | None) -> OtherInfo | None:
        if el is None:
            return None
        priority = self.integer(child(el, "Priority"))
        if priority is not None and priority not in Priority._value2member_map_:
            self.problem(
                "invalid-value", f"priority {priority} is not 0 to 4", child(el, "Priority")
            )  # type: ignore[arg-type]
            priority = None
        return OtherInfo(
            priority=Priority(priority) if priority is not None else Priority.NORMAL,
            sphere_of_promulgation=text(child(el, "SphereOfPromulgation")),
            typer_notation=text(child(el, "TyperNotation")),
            promulgation_amount=self.integer(child(el, "PromulgationAmount")),
            page_amount=self.integer(child(el, "PageAmount")),
            direction=self.boolean(child(el, "Direction")),
            appendixes=tuple(
                t for t in (text(a) for a in children(child(el, "Appendixes"), "Appendix")) if t
            ),
        )

    def business(self, el: etree._Element | None) -> Business | None:
        if el is None:
            return None
        kind_raw = self.integer(child(el, "BussinessDocType"))
        kind = BusinessKind.NEW
        if kind_raw is not None:
            if kind_raw in BusinessKind._value2member_map_:
                kind = BusinessKind(kind_raw)
            else:
                self.problem(
                    "invalid-value",
                    f"BussinessDocType {kind_raw} is not 0 to 3",
                    child(el, "BussinessDocType"),
                )  # type: ignore[arg-type]
        info = child(el, "BussinessDocumentInfo")
        changes = tuple(
            ReceiverChange(text(child(r, "OrganId")), text(child(r, "ReceiverType")) == "1")
            for r in children(child(info, "ReceiverList"), "Receiver")
        )
        replacements = tuple(
            Replacement(
                document_id=text(child(r, "DocumentId")),
                organ_ids=tuple(text(o) for o in children(child(r, "OrganIdList"), "OrganId")),
            )
            for r in children(child(el, "ReplacementInfoList"), "ReplacementInfo")
        )
        return Business(
            kind=kind,
            document_id=text(child(el, "DocumentId")),
            reason=text(child(el, "BussinessDocReason")),
            paper=self.boolean(child(el, "Paper")),
            document_info_changed=self.boolean(child(info, "DocumentInfo")),
            receivers_changed=self.boolean(child(info, "DocumentReceiver")),
            receiver_changes=changes,
            replacements=replacements,
            staff=self.staff(child(el, "StaffInfo")),
        )

    def attachments(self, parts: Parts) -> tuple[Attachment, ...]:
        encoded: dict[str, etree._Element] = {}
        for a in parts.encoded:
            encoded.setdefault(text(child(a, "ContentId")), a)
        out: list[Attachment] = []
        seen: set[str] = set()
        for ref in parts.references:
            cid = text(child(ref, "ContentId"))
            enc = encoded.get(cid)
            seen.add(cid)
            out.append(self._attachment(cid, ref, enc))
        for cid, enc in encoded.items():
            if cid not in seen:
                out.append(self._attachment(cid, None, enc))
        return tuple(out)

    def _attachment(
        self, cid: str, ref: etree._Element | None, enc: etree._Element | None
    ) -> Attachment:
        def field_of(name: str) -> str:
            return text(child(ref, name)) or text(child(enc, name))

        size = None
        if enc is not None:
            payload = child(enc, "ContentTransferEncoded")
            size = self.decoded_size(payload) if payload is not None else None
        return Attachment(
            content_id=cid,
            name=field_of("AttachmentName"),
            description=field_of("Description"),
            content_type=field_of("ContentType"),
            decoded_size=size,
        )

    def decoded_size(self, el: etree._Element) -> int | None:
        """Decode the base64 strictly (only whitespace is skipped) and measure it."""
        raw = el.text or ""
        try:
            clean = raw.encode("ascii").translate(None, _WHITESPACE)
            return len(binascii.a2b_base64(clean, strict_mode=True))
        except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
            self.problem("attachment-encoding", f"the attachment is not valid base64: {exc}", el)
            return None

    def signatures(self, root: etree._Element) -> tuple[SignatureInfo, ...]:
        return tuple(
            signature_info(sig) for sig in root.iter(q("Signature"), f"{{{DSIG_NS}}}Signature")
        )


def signature_info(sig: etree._Element) -> SignatureInfo:
    """What a Signature element claims (algorithms, certificate); not a verification."""
    ns = etree.QName(sig).namespace

    def sub(*names: str) -> etree._Element | None:
        node: etree._Element | None = sig
        for name in names:
            node = node.find(f"{{{ns}}}{name}") if node is not None else None
        return node

    def algorithm(node: etree._Element | None) -> str:
        return node.get("Algorithm", "") if node is not None else ""

    return SignatureInfo(
        namespace="edxml" if ns == NS else "xmldsig",
        path=element_path(sig),
        signature_method=algorithm(sub("SignedInfo", "SignatureMethod")),
        canonicalization=algorithm(sub("SignedInfo", "CanonicalizationMethod")),
        digest_method=algorithm(sub("SignedInfo", "Reference", "DigestMethod")),
        has_certificate=bool(text(sub("KeyInfo", "X509Data", "X509Certificate"))),
        subject=text(sub("KeyInfo", "X509Data", "X509SubjectName")),
    )


def _signer(el: etree._Element | None) -> SignerInfo | None:
    if el is None:
        return None
    return SignerInfo(
        competence=text(child(el, "Competence")),
        position=text(child(el, "Position")),
        full_name=text(child(el, "FullName")),
    )


def read_envelope(parts: Parts) -> tuple[Envelope, list[Problem]]:
    """The envelope view of a parsed package, with the problems met while reading."""
    r = _Reader()
    m = parts.message
    is_status = m is not None and (
        etree.QName(m).localname == "Status" or child(m, "StatusCode") is not None
    )
    code_el = child(m, "Code")
    code = None
    if code_el is not None and not is_status:
        code = DocumentCode(
            text(child(code_el, "CodeNumber")), text(child(code_el, "CodeNotation"))
        )
    status_raw = text(child(m, "StatusCode"))
    trace_list = child(parts.header, "TraceHeaderList")
    sender_el = child(m, "From")
    envelope = Envelope(
        kind=Kind.STATUS if is_status else Kind.DOCUMENT,
        sender=r.organization(sender_el) if sender_el is not None else Organization(""),
        recipients=tuple(r.organization(t) for t in children(m, "To")),
        document_id=text(child(m, "DocumentId")),
        code=code,
        promulgation=r.promulgation(child(m, "PromulgationInfo")),
        document_type=r.document_type(child(m, "DocumentType")),
        subject=text(child(m, "Subject")),
        content=text(child(m, "Content")),
        signer=_signer(child(m, "SignerInfo")),
        due_date=r.date(child(m, "DueDate")),
        to_places=tuple(t for t in (text(p) for p in children(child(m, "ToPlaces"), "Place")) if t),
        other=r.other(child(m, "OtherInfo")),
        steering_type=r.integer(child(m, "SteeringType")),
        response_for=tuple(
            r.response_for(e)
            for e in children(m, "ResponseFor")
            if any(text(c) for c in e)  # an all-empty ResponseFor block means none
        ),
        staff=r.staff(child(m, "StaffInfo")),
        status_code=StatusCode(status_raw) if status_raw in StatusCode._value2member_map_ else None,
        status_description=text(child(m, "Description")),
        status_timestamp=r.timestamp(child(m, "Timestamp")),
        status_form=etree.QName(m).localname if m is not None else "MessageHeader",
        trace=tuple(  # a hop's defects are warnings of the rules, not problems here
            TraceHeader(text(child(t, "OrganId")), parse_timestamp(text(child(t, "Timestamp")))[0])
            for t in children(trace_list, "TraceHeader")
        ),
        business=r.business(child(trace_list, "Bussiness")),
        attachments=r.attachments(parts),
        signatures=r.signatures(parts.root),
    )
    return envelope, r.problems
