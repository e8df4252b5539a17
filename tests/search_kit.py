"""Documents with their own number/notation, for the search tests (unit, API, e2e)."""

from __future__ import annotations

from collections.abc import Sequence

from tests.edxml_samples import document

SAMPLE_CODE = b"<edXML:CodeNumber>12</edXML:CodeNumber>"
SAMPLE_NOTATION = b"<edXML:CodeNotation>UBND-VP</edXML:CodeNotation>"


def numbered(
    number: str,
    notation: str,
    *,
    sender: str = "000.00.00.H35",
    recipients: Sequence[str] = ("000.00.01.H35",),
    subject: str = "V/v kết nối, liên thông phần mềm quản lý văn bản",
    day: str = "2026/11/24",
) -> bytes:
    """A document numbered `number`/`notation` (e.g. 345/SCT-VP), its DocumentId made
    from its sender, `day` and its code as QCVN 102 writes it."""
    data = document(
        sender=sender,
        recipients=recipients,
        document_id=f"{sender},{day},{number}/{notation}",
        subject=subject,
    )
    assert SAMPLE_CODE in data and SAMPLE_NOTATION in data, "the sample's Code changed"
    return data.replace(
        SAMPLE_CODE, f"<edXML:CodeNumber>{number}</edXML:CodeNumber>".encode()
    ).replace(SAMPLE_NOTATION, f"<edXML:CodeNotation>{notation}</edXML:CodeNotation>".encode())
