"""edXML packages written for the tests (the shared interop samples are not copied)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from xml.sax.saxutils import escape

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"


def document(
    sender: str = "000.00.00.H35",
    recipients: Sequence[str] = ("000.00.01.H35",),
    document_id: str = "000.00.00.H35,2026/11/24,12/UBND-VP",
    subject: str = "V/v kết nối, liên thông phần mềm quản lý văn bản",
    padding: int = 0,
    due_date: str | None = None,
) -> bytes:
    """A small document package; `padding` adds a Content text of that many bytes;
    `due_date` (yyyy/MM/dd) a DueDate."""
    to = "".join(
        f"<edXML:To><edXML:OrganId>{escape(r)}</edXML:OrganId></edXML:To>" for r in recipients
    )
    content = "x" * padding
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="{NS}">
  <edXML:edXMLEnvelope xmlns:edXML="{NS}">
    <edXML:edXMLHeader>
      <edXML:MessageHeader>
        <edXML:From><edXML:OrganId>{escape(sender)}</edXML:OrganId></edXML:From>
        {to}
        <edXML:DocumentId>{escape(document_id)}</edXML:DocumentId>
        <edXML:Code>
          <edXML:CodeNumber>12</edXML:CodeNumber>
          <edXML:CodeNotation>UBND-VP</edXML:CodeNotation>
        </edXML:Code>
        <edXML:PromulgationInfo>
          <edXML:Place>Lai Châu</edXML:Place>
          <edXML:PromulgationDate>2026/11/20</edXML:PromulgationDate>
        </edXML:PromulgationInfo>
        <edXML:Subject>{escape(subject)}</edXML:Subject>
        <edXML:Content>{content}</edXML:Content>{
        f"<edXML:DueDate>{due_date}</edXML:DueDate>" if due_date else ""
    }
      </edXML:MessageHeader>
    </edXML:edXMLHeader>
  </edXML:edXMLEnvelope>
</edXML>
""".encode()


def status(
    sender: str = "000.00.01.H35",
    answers: str = "000.00.00.H35",
    document_id: str = "000.00.00.H35,2026/11/24,12/UBND-VP",
    code: str = "03",
) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="{NS}">
  <edXML:edXMLEnvelope xmlns:edXML="{NS}">
    <edXML:edXMLHeader>
      <edXML:MessageHeader>
        <edXML:From><edXML:OrganId>{escape(sender)}</edXML:OrganId></edXML:From>
        <edXML:ResponseFor>
          <edXML:OrganId>{escape(answers)}</edXML:OrganId>
          <edXML:DocumentId>{escape(document_id)}</edXML:DocumentId>
        </edXML:ResponseFor>
        <edXML:StatusCode>{code}</edXML:StatusCode>
        <edXML:Timestamp>2026/11/24 10:00:00</edXML:Timestamp>
      </edXML:MessageHeader>
    </edXML:edXMLHeader>
  </edXML:edXMLEnvelope>
</edXML>
""".encode()


def hop(
    organ_id: str | None = "000.00.00.H35", timestamp: str | None = "2026/11/20 08:00:00"
) -> str:
    """A TraceHeader; None leaves the element out, as some real hops do."""
    parts = [
        f"<edXML:{name}>{escape(value)}</edXML:{name}>"
        for name, value in (("OrganId", organ_id), ("Timestamp", timestamp))
        if value is not None
    ]
    return f"<edXML:TraceHeader>{''.join(parts)}</edXML:TraceHeader>"


def full_document(
    *,
    attachments: dict[str, bytes] | None = None,
    business: str = "",
    promulgation_date: str = "2026/11/20",
    priority: str = "0",
    extra_header: str = "",
    extra_root: str = "",
    trace: str | None = None,
) -> bytes:
    """A document package with every common part, attachments included; `trace` is
    what its TraceHeaderList holds (default: one hop, then `business`)."""
    import base64

    attachments = {"cid:1": b"%PDF-1.7 test"} if attachments is None else attachments
    refs = "".join(
        f"""<edXML:Reference>
          <edXML:ContentId>{cid}</edXML:ContentId>
          <edXML:ContentType>application/pdf</edXML:ContentType>
          <edXML:AttachmentName>{cid[4:]}.pdf</edXML:AttachmentName>
        </edXML:Reference>"""
        for cid in attachments
    )
    encoded = "".join(
        f"""<Attachment>
      <ContentId>{cid}</ContentId>
      <AttachmentName>{cid[4:]}.pdf</AttachmentName>
      <ContentType>application/pdf</ContentType>
      <edXML:ContentTransferEncoded xmlns:edXML="{NS}">{
            base64.b64encode(data).decode()
        }</edXML:ContentTransferEncoded>
    </Attachment>"""
        for cid, data in attachments.items()
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="{NS}">
  <edXML:edXMLEnvelope xmlns:edXML="{NS}">
    <edXML:edXMLHeader>
      <edXML:MessageHeader>
        <edXML:From>
          <edXML:OrganId>000.00.00.H35</edXML:OrganId>
          <edXML:OrganName>UBND tỉnh Lai Châu</edXML:OrganName>
        </edXML:From>
        <edXML:To><edXML:OrganId>000.00.01.H35</edXML:OrganId></edXML:To>
        <edXML:To><edXML:OrganId>000.00.02.H35</edXML:OrganId></edXML:To>
        <edXML:DocumentId>000.00.00.H35,2026/11/20,12/UBND-VP</edXML:DocumentId>
        <edXML:Code>
          <edXML:CodeNumber>12</edXML:CodeNumber>
          <edXML:CodeNotation>UBND-VP</edXML:CodeNotation>
        </edXML:Code>
        <edXML:PromulgationInfo>
          <edXML:Place>Lai Châu</edXML:Place>
          <edXML:PromulgationDate>{promulgation_date}</edXML:PromulgationDate>
        </edXML:PromulgationInfo>
        <edXML:Subject>V/v triển khai trục liên thông</edXML:Subject>
        <edXML:OtherInfo><edXML:Priority>{priority}</edXML:Priority></edXML:OtherInfo>
        {extra_header}
      </edXML:MessageHeader>
      <edXML:TraceHeaderList>
        {hop() + business if trace is None else trace}
      </edXML:TraceHeaderList>
    </edXML:edXMLHeader>
    <edXML:edXMLBody>
      <edXML:edXMLManifest version="1.0">{refs}</edXML:edXMLManifest>
    </edXML:edXMLBody>
  </edXML:edXMLEnvelope>
  <AttachmentEncoded>{encoded}</AttachmentEncoded>{extra_root}
</edXML>
""".encode()


_SENDER = re.compile(rb"<edXML:From>\s*<edXML:OrganId>([^<]+)</edXML:OrganId>")


def sender_of(data: bytes) -> str | None:
    """From/OrganId of a package (by pattern: also for broken packages in tests)."""
    found = _SENDER.search(data)
    return found.group(1).decode() if found else None
