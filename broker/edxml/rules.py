"""Semantic rules of edXML packages beyond the schema, each with its problem code.

Cardinalities live here because XSD 1.0 cannot combine them with free element
order. Rules for what routing and trust depend on (one sender, one document
id, the recipients, the status's target) are strict; the rest is lenient, and
irregularities real senders emit that neither routing nor trust reads (a hop
naming nobody, blocks out of order) are warnings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from lxml import etree

from broker.core.problems import Irregularity, Problem
from broker.edxml.model import BusinessKind, Envelope, Kind
from broker.edxml.ns import NS, local
from broker.edxml.reader import Parts, child, children, location, parse_timestamp, text

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Explicit bounds on what one package may hold."""

    max_bytes: int = 32 * MiB
    max_depth: int = 32
    max_elements: int = 100_000
    max_recipients: int = 1000
    max_attachments: int = 100


class _Rules:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.warnings: list[Irregularity] = []

    def add(self, code: str, message: str, el: etree._Element) -> None:
        self.problems.append(Problem(code, message, location(el)))

    def warn(self, code: str, message: str, el: etree._Element) -> None:
        self.warnings.append(Irregularity(code, message, location(el)))

    def one(
        self, parent: etree._Element | None, name: str, *, required: bool, what: str = ""
    ) -> etree._Element | None:
        """At most one `name` under `parent` (and at least one if required)."""
        if parent is None:
            return None
        found = children(parent, name)
        label = what or name
        if not found:
            if required:
                self.add("missing-field", f"{label} is missing", parent)
            return None
        for extra in found[1:]:
            self.add("duplicate-field", f"{label} appears more than once", extra)
        return found[0]

    def filled(self, parent: etree._Element | None, name: str, what: str) -> str:
        """Exactly one non-empty `name` under `parent`."""
        el = self.one(parent, name, required=True, what=what)
        if el is not None and not text(el):
            self.add("missing-field", f"{what} is empty", el)
        return text(el)


def check_rules(
    env: Envelope, parts: Parts, limits: Limits, today: date
) -> tuple[list[Problem], list[Irregularity]]:
    """Every rule broken by the package, and its irregularities; `today` is the date
    in Vietnam."""
    r = _Rules()
    root = parts.root
    r.one(root, "edXMLEnvelope", required=True)
    r.one(parts.envelope, "edXMLHeader", required=True)
    r.one(parts.envelope, "edXMLBody", required=False)
    r.one(root, "AttachmentEncoded", required=False)
    header = parts.header
    if header is not None:
        heads = children(header, "MessageHeader") + children(header, "Status")
        if not heads:
            r.add("missing-field", "MessageHeader is missing", header)
        for extra in heads[1:]:
            r.add("duplicate-field", "the header holds more than one MessageHeader", extra)
        r.one(header, "TraceHeaderList", required=False)
    m = parts.message
    if m is not None:
        sender = r.one(m, "From", required=True)
        r.filled(sender, "OrganId", "From/OrganId")
        if env.kind is Kind.STATUS:
            _status_rules(r, m)
        else:
            _document_rules(r, m, env, limits, today)
    _trace_rules(r, header)
    _order_rules(r, parts)
    _attachment_rules(r, parts, limits)
    return r.problems, r.warnings


def _document_rules(
    r: _Rules, m: etree._Element, env: Envelope, limits: Limits, today: date
) -> None:
    recipients = children(m, "To")
    if not recipients:
        r.add("missing-field", "no recipient: To is missing", m)
    if len(recipients) > limits.max_recipients:
        r.add(
            "too-many-recipients",
            f"{len(recipients)} recipients; the limit is {limits.max_recipients}",
            m,
        )
    seen: dict[str, etree._Element] = {}
    for to in recipients:
        organ_id = r.filled(to, "OrganId", "To/OrganId")
        if organ_id in seen:
            r.add("duplicate-recipient", f"{organ_id} is named more than once in To", to)
        elif organ_id:
            seen[organ_id] = to
    r.filled(m, "DocumentId", "DocumentId")
    code = r.one(m, "Code", required=True)
    if code is not None and not (
        text(child(code, "CodeNumber")) or text(child(code, "CodeNotation"))
    ):
        r.add("missing-field", "Code has neither CodeNumber nor CodeNotation", code)
    for name in (
        "PromulgationInfo",
        "DocumentType",
        "Subject",
        "Content",
        "SignerInfo",
        "DueDate",
        "OtherInfo",
        "SteeringType",
        "ToPlaces",
    ):
        r.one(m, name, required=False)
    promulgation = child(m, "PromulgationInfo")
    when = env.promulgation.date if env.promulgation else None
    if when is not None and when > today and promulgation is not None:
        date_el = child(promulgation, "PromulgationDate")
        r.add(
            "future-date",
            f"the promulgation date {when:%Y/%m/%d} is in the future",
            date_el if date_el is not None else promulgation,
        )
    if env.business is not None:
        _business_rules(r, env, child(m.getparent(), "TraceHeaderList"))


def _business_rules(r: _Rules, env: Envelope, trace_list: etree._Element | None) -> None:
    business = children(trace_list, "Bussiness")
    for extra in business[1:]:
        r.add("duplicate-field", "Bussiness appears more than once", extra)
    if not business or env.business is None:
        return
    el = business[0]
    kind = env.business.kind
    if kind is BusinessKind.UPDATE and not env.business.document_id:
        r.add(
            "missing-target",
            "an update (BussinessDocType 2) must name its target in Bussiness/DocumentId",
            el,
        )
    if kind is BusinessKind.REPLACEMENT and not env.business.targets:
        r.add(
            "missing-target",
            "a replacement (BussinessDocType 3) must name the replaced "
            "documents in ReplacementInfoList/ReplacementInfo/DocumentId",
            el,
        )


def _status_rules(r: _Rules, m: etree._Element) -> None:
    code = r.one(m, "StatusCode", required=True)
    if code is not None and not text(code):
        r.add("unknown-status-code", "StatusCode is empty", code)
    target = r.one(
        m, "ResponseFor", required=True, what="ResponseFor (the document this status answers)"
    )
    r.filled(target, "OrganId", "ResponseFor/OrganId")
    r.filled(target, "DocumentId", "ResponseFor/DocumentId")
    for name in ("StaffInfo", "Description", "Timestamp"):
        r.one(m, name, required=False)


def _trace_rules(r: _Rules, header: etree._Element | None) -> None:
    """A hop names who handled the package and when; the national axis sends hops
    whose OrganId is the text "null" or absent. Nothing reads them but people:
    warnings. Two OrganIds or Timestamps in one hop stay a problem (duplicate-field)."""
    for hop in children(child(header, "TraceHeaderList"), "TraceHeader"):
        organ = r.one(hop, "OrganId", required=False)
        organ_id = text(organ)
        if not organ_id or organ_id.lower() == "null":
            said = "is missing" if organ is None else f"is {organ_id!r}" if organ_id else "is empty"
            r.warn(
                "trace-organ-id-missing",
                f"TraceHeader/OrganId {said}: the hop names nobody",
                organ if organ is not None else hop,
            )
        stamp = r.one(hop, "Timestamp", required=False)
        raw = text(stamp)
        wrong = parse_timestamp(raw)[1] if raw else "empty" if stamp is not None else "missing"
        if wrong:
            r.warn(
                "trace-timestamp-invalid",
                f"TraceHeader/Timestamp: {wrong}",
                stamp if stamp is not None else hop,
            )


# The order QCVN 102 gives the package's blocks. Within blocks the order varies between
# the official SDK and production systems (e.g. ResponseFor's children) and is free.
_BLOCK_ORDER: dict[str, tuple[frozenset[str], ...]] = {
    "edXML": (frozenset({"edXMLEnvelope"}), frozenset({"AttachmentEncoded"})),
    "edXMLEnvelope": (frozenset({"edXMLHeader"}), frozenset({"edXMLBody"})),
    "edXMLHeader": (
        frozenset({"MessageHeader", "Status"}),
        frozenset({"TraceHeaderList"}),
        frozenset({"Signature"}),
    ),
    "TraceHeaderList": (frozenset({"TraceHeader"}), frozenset({"Bussiness"})),
}


def _order_rules(r: _Rules, parts: Parts) -> None:
    """One warning per block whose parts are out of the standard's order, at the
    first part that comes too late."""
    header = parts.header
    for block in (parts.root, parts.envelope, header, child(header, "TraceHeaderList")):
        if block is None:
            continue
        ranks = _BLOCK_ORDER[local(block)]
        latest: etree._Element | None = None
        latest_rank = -1
        for el in block.iterchildren(tag=f"{{{NS}}}*"):
            rank = next((i for i, names in enumerate(ranks) if local(el) in names), None)
            if rank is None:
                continue
            if latest is not None and rank < latest_rank:
                r.warn(
                    "element-order",
                    f"{local(el)} comes after {local(latest)} in {local(block)}; "
                    f"the standard puts {local(el)} first",
                    el,
                )
                break
            latest, latest_rank = el, rank


def _content_ids(
    r: _Rules, elements: Iterable[etree._Element], what: str
) -> dict[str, etree._Element]:
    found: dict[str, etree._Element] = {}
    counts: Counter[str] = Counter()
    for el in elements:
        cid = r.filled(el, "ContentId", f"{what}/ContentId")
        if not cid:
            continue
        counts[cid] += 1
        if counts[cid] == 2:
            r.add("duplicate-field", f"ContentId {cid} is used by more than one {what}", el)
        found.setdefault(cid, el)
    return found


def _attachment_rules(r: _Rules, parts: Parts, limits: Limits) -> None:
    n = max(len(parts.references), len(parts.encoded))
    if n > limits.max_attachments:
        r.add(
            "too-many-attachments",
            f"{n} attachments; the limit is {limits.max_attachments}",
            parts.body if parts.body is not None else parts.root,
        )
    refs = _content_ids(r, parts.references, "Reference")
    encoded = _content_ids(r, parts.encoded, "Attachment")
    for cid, el in refs.items():
        if cid not in encoded:
            r.add(
                "attachment-missing", f"the manifest names {cid} but no Attachment carries it", el
            )
    for cid, el in encoded.items():
        if cid not in refs:
            r.add("attachment-unreferenced", f"Attachment {cid} is not named in the manifest", el)
    for el in parts.encoded:
        r.one(el, "ContentTransferEncoded", required=True, what="Attachment/ContentTransferEncoded")
