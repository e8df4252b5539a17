"""The envelope view: a typed, immutable picture of one edXML package.

Values read from XML become domain values at the border: an unknown status
code, business kind or priority is a problem, not a string passed along.
Dates are calendar dates; timestamps are naive datetimes in Vietnam local time
(UTC+7, no offset in the standard).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum, IntEnum, StrEnum
from typing import Any


class Kind(StrEnum):
    DOCUMENT = "document"
    STATUS = "status"


class BusinessKind(IntEnum):
    """BussinessDocType: what a document package does."""

    NEW = 0  # văn bản mới
    REVOCATION = 1  # thu hồi
    UPDATE = 2  # cập nhật
    REPLACEMENT = 3  # thay thế


class StatusCode(StrEnum):
    """Processing statuses that travel back to the sender of a document."""

    RECEIVED = "01"  # đã đến: received by the recipient's software
    REFUSED = "02"  # từ chối tiếp nhận: refused
    REGISTERED = "03"  # đã tiếp nhận: registered by the văn thư
    ASSIGNED = "04"  # phân công: assigned for handling
    IN_PROGRESS = "05"  # đang xử lý: being handled
    DONE = "06"  # hoàn thành: done
    RECALL = "13"  # lấy lại: the original sender recalls the document
    RECALL_ACCEPTED = "15"  # the receiver accepts a recall or update
    RECALL_REFUSED = "16"  # the receiver refuses a recall or update

    @property
    def meaning(self) -> str:
        return STATUS_MEANINGS[self]


STATUS_MEANINGS = {
    StatusCode.RECEIVED: "Đã đến (received)",
    StatusCode.REFUSED: "Từ chối tiếp nhận (refused)",
    StatusCode.REGISTERED: "Đã tiếp nhận (registered)",
    StatusCode.ASSIGNED: "Phân công (assigned)",
    StatusCode.IN_PROGRESS: "Đang xử lý (in progress)",
    StatusCode.DONE: "Hoàn thành (done)",
    StatusCode.RECALL: "Lấy lại (recall)",
    StatusCode.RECALL_ACCEPTED: "Đồng ý thu hồi/cập nhật (recall or update accepted)",
    StatusCode.RECALL_REFUSED: "Từ chối thu hồi/cập nhật (recall or update refused)",
}


class Priority(IntEnum):
    NORMAL = 0  # thường
    URGENT = 1  # khẩn
    VERY_URGENT = 2  # thượng khẩn
    EXPRESS = 3  # hỏa tốc
    EXPRESS_TIMED = 4  # hỏa tốc hẹn giờ


@dataclass(frozen=True, slots=True)
class Organization:
    """From or To: an agency by its code (mã định danh) and contact data."""

    organ_id: str
    organ_name: str = ""
    organization_in_charge: str = ""
    address: str = ""
    email: str = ""
    telephone: str = ""
    fax: str = ""
    website: str = ""


@dataclass(frozen=True, slots=True)
class DocumentCode:
    """Số và ký hiệu: number and notation, e.g. 7816 / VPCP-TTĐT."""

    number: str
    notation: str

    def __str__(self) -> str:
        return f"{self.number}/{self.notation}" if self.notation else self.number


@dataclass(frozen=True, slots=True)
class Promulgation:
    place: str = ""
    date: date | None = None


@dataclass(frozen=True, slots=True)
class DocumentType:
    type: int | None = None
    detail: int | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class SignerInfo:
    competence: str = ""
    position: str = ""
    full_name: str = ""


@dataclass(frozen=True, slots=True)
class OtherInfo:
    priority: Priority = Priority.NORMAL
    sphere_of_promulgation: str = ""
    typer_notation: str = ""
    promulgation_amount: int | None = None
    page_amount: int | None = None
    direction: bool | None = None
    appendixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResponseFor:
    """The document a package answers (a status's target, or a reply's)."""

    organ_id: str
    document_id: str
    code: str = ""
    promulgation_date: date | None = None


@dataclass(frozen=True, slots=True)
class StaffInfo:
    department: str = ""
    staff: str = ""
    email: str = ""
    mobile: str = ""


@dataclass(frozen=True, slots=True)
class TraceHeader:
    """One hop: who handled the package, when (Vietnam local time). Real hops may
    name nobody ("" or the text "null") or carry no usable time (None): warnings."""

    organ_id: str
    timestamp: datetime | None


@dataclass(frozen=True, slots=True)
class ReceiverChange:
    """An update's change of recipients: added (True) or removed (False)."""

    organ_id: str
    added: bool


@dataclass(frozen=True, slots=True)
class Replacement:
    """A replacement's target document and the agencies it was sent to."""

    document_id: str
    organ_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Business:
    """The Bussiness block: new, revocation, update or replacement, and targets."""

    kind: BusinessKind = BusinessKind.NEW
    document_id: str = ""  # an update's target
    reason: str = ""
    paper: bool | None = None
    document_info_changed: bool | None = None
    receivers_changed: bool | None = None
    receiver_changes: tuple[ReceiverChange, ...] = ()
    replacements: tuple[Replacement, ...] = ()
    staff: StaffInfo | None = None

    @property
    def targets(self) -> tuple[str, ...]:
        """Document ids this package acts on (besides its own DocumentId)."""
        if self.kind is BusinessKind.UPDATE:
            return (self.document_id,) if self.document_id else ()
        if self.kind is BusinessKind.REPLACEMENT:
            return tuple(r.document_id for r in self.replacements if r.document_id)
        return ()


@dataclass(frozen=True, slots=True)
class Attachment:
    """A manifest reference matched with its encoded attachment by ContentId."""

    content_id: str
    name: str = ""
    description: str = ""
    content_type: str = ""
    decoded_size: int | None = None  # None when not encoded in the package


@dataclass(frozen=True, slots=True)
class SignatureInfo:
    """A signature found in the package (what it claims; verification is separate)."""

    namespace: str  # "edxml" (the edXML-namespace profile) or "xmldsig"
    path: str
    signature_method: str = ""
    canonicalization: str = ""
    digest_method: str = ""
    has_certificate: bool = False
    subject: str = ""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One edXML package, document or status."""

    kind: Kind
    sender: Organization
    recipients: tuple[Organization, ...] = ()
    document_id: str = ""
    code: DocumentCode | None = None
    promulgation: Promulgation | None = None
    document_type: DocumentType | None = None
    subject: str = ""
    content: str = ""
    signer: SignerInfo | None = None
    due_date: date | None = None
    to_places: tuple[str, ...] = ()
    other: OtherInfo | None = None
    steering_type: int | None = None
    response_for: tuple[ResponseFor, ...] = ()
    staff: StaffInfo | None = None
    status_code: StatusCode | None = None
    status_description: str = ""
    status_timestamp: datetime | None = None
    status_form: str = "MessageHeader"  # or "Status" (one provincial system's form)
    trace: tuple[TraceHeader, ...] = ()
    business: Business | None = None
    attachments: tuple[Attachment, ...] = ()
    signatures: tuple[SignatureInfo, ...] = ()

    @property
    def sender_id(self) -> str:
        return self.sender.organ_id

    @property
    def recipient_ids(self) -> tuple[str, ...]:
        """Where the package goes: To/OrganId for a document, ResponseFor/OrganId
        for a status; each once, in order."""
        if self.kind is Kind.STATUS:
            ids = [self.response_for[0].organ_id] if self.response_for else []
        else:
            ids = [r.organ_id for r in self.recipients]
        return tuple(dict.fromkeys(i for i in ids if i))

    @property
    def subject_document_id(self) -> str:
        """The document this package is about: its own, or the one a status answers."""
        if self.kind is Kind.STATUS and self.response_for:
            return self.response_for[0].document_id
        return self.document_id

    @property
    def business_kind(self) -> BusinessKind:
        return self.business.kind if self.business else BusinessKind.NEW

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (dates as ISO strings, enums by value)."""
        return _plain(self)  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
