"""edXML packages written for the tests (the shared interop samples are not copied)."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"


def document(
    sender: str = "000.00.00.H35",
    recipients: Sequence[str] = ("000.00.01.H35",),
    document_id: str = "000.00.00.H35,2026/11/24,12/UBND-VP",
    subject: str = "V/v kết nối, liên thông phần mềm quản lý văn bản",
    padding: int = 0,
) -> bytes:
    """A small document package; `padding` adds a Content text of that many bytes."""
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
        <edXML:Subject>{escape(subject)}</edXML:Subject>
        <edXML:Content>{content}</edXML:Content>
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
