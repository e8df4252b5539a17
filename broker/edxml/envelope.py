"""What routing needs from an edXML package: kind, sender, recipients, document id.

Read by namespace, never by prefix. Documents are addressed by
MessageHeader/To/OrganId; status packages answer ResponseFor/OrganId (some
systems send `edXML:Status` in place of `MessageHeader`: both are read).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from lxml import etree

from broker.edxml.parser import parse_untrusted
from broker.errors import InputRefused
from broker.problems import Location, Problem

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"


def q(name: str) -> str:
    """Clark notation of an edXML element name."""
    return f"{{{NS}}}{name}"


class Kind(StrEnum):
    DOCUMENT = "document"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class RoutingView:
    """The fields the pipeline routes on."""

    kind: Kind
    sender: str
    recipients: tuple[str, ...]
    document_id: str


def _text(el: etree._Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _path(el: etree._Element) -> str:
    return el.getroottree().getpath(el)


def read_routing(data: bytes) -> RoutingView:
    """Parse untrusted bytes and read the routing fields; raise InputRefused."""
    tree = parse_untrusted(data)
    root = tree.getroot()
    if root.tag != q("edXML"):
        raise InputRefused(
            [
                Problem(
                    "wrong-namespace",
                    f"the root element is {root.tag!r}, expected edXML in namespace {NS}",
                    Location(line=root.sourceline, path="/" + etree.QName(root).localname),
                )
            ]
        )
    header = root.find(f"{q('edXMLEnvelope')}/{q('edXMLHeader')}")
    if header is None:
        raise InputRefused(
            [
                Problem(
                    "missing-field",
                    "edXMLEnvelope/edXMLHeader is missing",
                    Location(line=root.sourceline, path=_path(root)),
                )
            ]
        )
    message = header.find(q("MessageHeader"))
    if message is None:
        message = header.find(q("Status"))
    if message is None:
        raise InputRefused(
            [
                Problem(
                    "missing-field",
                    "MessageHeader is missing",
                    Location(line=header.sourceline, path=_path(header)),
                )
            ]
        )
    problems: list[Problem] = []
    sender = _text(message.find(f"{q('From')}/{q('OrganId')}"))
    if not sender:
        problems.append(
            Problem(
                "missing-field",
                "From/OrganId is missing or empty",
                Location(line=message.sourceline, path=_path(message)),
            )
        )
    is_status = message.find(q("StatusCode")) is not None
    if is_status:
        targets = [message.find(f"{q('ResponseFor')}/{q('OrganId')}")]
        document_id = _text(message.find(f"{q('ResponseFor')}/{q('DocumentId')}"))
        what = "ResponseFor/OrganId"
    else:
        targets = message.findall(f"{q('To')}/{q('OrganId')}")
        document_id = _text(message.find(q("DocumentId")))
        what = "To/OrganId"
    recipients = tuple(dict.fromkeys(t for t in (_text(e) for e in targets) if t))
    if not recipients:
        problems.append(
            Problem(
                "missing-field",
                f"no recipient: {what} is missing or empty",
                Location(line=message.sourceline, path=_path(message)),
            )
        )
    if not document_id:
        problems.append(
            Problem(
                "missing-field",
                "DocumentId is missing or empty",
                Location(line=message.sourceline, path=_path(message)),
            )
        )
    if problems:
        raise InputRefused(problems)
    return RoutingView(
        kind=Kind.STATUS if is_status else Kind.DOCUMENT,
        sender=sender,
        recipients=recipients,
        document_id=document_id,
    )
