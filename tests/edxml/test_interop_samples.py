"""Every real sample in ../shared/interop gets the right verdict.

The folder is data from other implementations (not copied into this repository);
CI has it beside the checkout. Without it these tests are skipped, loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.clock import utc_now
from broker.edxml.model import BusinessKind, Kind, StatusCode
from broker.edxml.validator import EnvelopeValidator

INTEROP = Path(__file__).resolve().parents[3] / "shared" / "interop"
pytestmark = pytest.mark.skipif(not INTEROP.is_dir(), reason=f"{INTEROP} is not here")

G22, H41 = "000.00.00.G22", "000.00.00.H41"
THREE = (H41, "000.00.00.H14", "000.00.00.G17")

VALID = {
    # file: (kind, sender, recipients, status code, business kind)
    "bkav-samples/edoc_new.edxml": (
        Kind.DOCUMENT,
        "000.00.11.H53",
        ("000.00.01.A53",),
        None,
        BusinessKind.NEW,
    ),
    "bkav-samples/edoc_update.edxml": (
        Kind.DOCUMENT,
        G22,
        ("000.00.00.H53", "000.00.12.H53", "000.00.00.G17"),
        None,
        BusinessKind.UPDATE,
    ),
    "bkav-samples/status_processing_05.edxml": (
        Kind.STATUS,
        H41,
        (G22,),
        StatusCode.IN_PROGRESS,
        BusinessKind.NEW,
    ),
    "vnpt-sdk-samples/edoc_replacement.edxml": (
        Kind.DOCUMENT,
        G22,
        THREE,
        None,
        BusinessKind.REPLACEMENT,
    ),
    "vnpt-sdk-samples/edoc_revocation.edxml": (
        Kind.DOCUMENT,
        G22,
        THREE,
        None,
        BusinessKind.REVOCATION,
    ),
    "vnpt-sdk-samples/edoc_update.edxml": (Kind.DOCUMENT, G22, THREE, None, BusinessKind.UPDATE),
    "vnpt-sdk-samples/status.edxml": (
        Kind.STATUS,
        H41,
        (G22,),
        StatusCode.RECEIVED,
        BusinessKind.NEW,
    ),
    "vnpt-sdk-samples/status_inbox_01.edxml": (
        Kind.STATUS,
        H41,
        (G22,),
        StatusCode.RECEIVED,
        BusinessKind.NEW,
    ),
    "vnpt-sdk-samples/status_rejection_02.edxml": (
        Kind.STATUS,
        H41,
        (G22,),
        StatusCode.REFUSED,
        BusinessKind.NEW,
    ),
    "vnpt-sdk-samples/status_acceptance_03.edxml": (
        Kind.STATUS,
        H41,
        (G22,),
        StatusCode.REGISTERED,
        BusinessKind.NEW,
    ),
    "vnpt-sdk-samples/status_assignment_04.edxml": (
        Kind.STATUS,
        H41,
        (G22,),
        StatusCode.ASSIGNED,
        BusinessKind.NEW,
    ),
    "vnpt-sdk-samples/status_processing_05.edxml": (
        Kind.STATUS,
        H41,
        (G22,),
        StatusCode.IN_PROGRESS,
        BusinessKind.NEW,
    ),
    "vnpt-sdk-samples/status_finish_06.edxml": (
        Kind.STATUS,
        H41,
        (G22,),
        StatusCode.DONE,
        BusinessKind.NEW,
    ),
    "vnpt-sdk-samples/status_cancellation_13.edxml": (
        Kind.STATUS,
        G22,
        (H41,),
        StatusCode.RECALL,
        BusinessKind.NEW,
    ),
    "vnpt-sdk-samples/status_change-acceptance_15.edxml": (
        Kind.STATUS,
        H41,
        (G22,),
        StatusCode.RECALL_ACCEPTED,
        BusinessKind.NEW,
    ),
    "vnpt-sdk-samples/status_change-rejection_16.edxml": (
        Kind.STATUS,
        H41,
        (G22,),
        StatusCode.RECALL_REFUSED,
        BusinessKind.NEW,
    ),
}

REFUSED = {
    # file: (code, line, column, words the message must contain)
    "vnpt-sdk-samples/edoc_new.edxml": ("not-well-formed", 1, 1, "1212"),
    "vnpt-sdk-samples/edoc.edxml": ("not-well-formed", 116, 39, "xlink"),
}


@pytest.fixture(scope="module")
def validator() -> EnvelopeValidator:
    return EnvelopeValidator(clock=utc_now)


def test_the_table_covers_every_sample() -> None:
    """A new sample in the folder must get an expected verdict here."""
    found = {str(p.relative_to(INTEROP)) for p in INTEROP.rglob("*.edxml")}
    assert found == set(VALID) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_sample(validator: EnvelopeValidator, name: str) -> None:
    verdict = validator.validate((INTEROP / name).read_bytes())
    assert verdict.problems == ()
    assert verdict.warnings == ()  # the SDK's own samples and BKAV's are regular
    env = verdict.envelope
    assert env is not None
    kind, sender, recipients, status, business = VALID[name]
    assert (env.kind, env.sender_id, env.recipient_ids) == (kind, sender, recipients)
    assert env.status_code is status
    assert env.business_kind is business


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_broken_sample_is_refused_with_a_located_error(
    validator: EnvelopeValidator, name: str
) -> None:
    code, line, column, words = REFUSED[name]
    verdict = validator.validate((INTEROP / name).read_bytes())
    (problem,) = verdict.problems
    assert verdict.warnings == ()
    assert problem.code == code
    assert problem.location is not None
    assert (problem.location.line, problem.location.column) == (line, column)
    assert words in problem.message


def test_document_details_are_read(validator: EnvelopeValidator) -> None:
    """The update sample: code, dates, business targets, attachment, signature."""
    env = validator.check((INTEROP / "vnpt-sdk-samples/edoc_update.edxml").read_bytes())
    assert str(env.code) == "7816/VPCP-TTĐT"
    assert env.promulgation is not None and env.promulgation.date.isoformat() == "2018-09-28"
    assert env.business is not None
    assert env.business.targets == ("000.00.00.G22,2014/02/30,7806/VPCP-TTĐT",)
    assert [(c.organ_id, c.added) for c in env.business.receiver_changes] == [
        (H41, False),
        ("000.00.00.H14", True),
    ]
    (attachment,) = env.attachments
    assert attachment.name == "1896_QD-TTg_m_294779.doc"
    assert attachment.content_type == "application/zip"
    assert attachment.decoded_size == 270823
    (signature,) = env.signatures
    assert signature.namespace == "edxml"
    assert signature.signature_method.endswith("rsa-sha1")


def test_bkav_dates_in_day_first_form_are_read(validator: EnvelopeValidator) -> None:
    """BKAV sends PromulgationDate as dd/MM/yyyy and an empty DueDate."""
    env = validator.check((INTEROP / "bkav-samples/edoc_new.edxml").read_bytes())
    assert env.promulgation is not None and env.promulgation.date.isoformat() == "2020-10-30"
    assert env.due_date is None


def test_replacement_targets(validator: EnvelopeValidator) -> None:
    env = validator.check((INTEROP / "vnpt-sdk-samples/edoc_replacement.edxml").read_bytes())
    assert env.business is not None
    assert env.business.targets == ("000.00.00.G22,2014/01/30,7806/VPCP-TTĐT",) * 2
    assert env.business.replacements[0].organ_ids == (H41, "000.00.00.H14")


def test_the_sdk_sample_as_the_national_axis_brings_it(validator: EnvelopeValidator) -> None:
    """The update sample with what real traffic from the axis carries: a hop naming
    `null`, Bussiness before the TraceHeader, a vendor element. Accepted, warned."""
    data = (INTEROP / "vnpt-sdk-samples/edoc_update.edxml").read_bytes()
    trace_list = data[data.index(b"<edXML:TraceHeaderList>") : data.index(b"<Signature>")]
    hop = trace_list[
        trace_list.index(b"<edXML:TraceHeader>") : trace_list.index(b"<edXML:Bussiness>")
    ]
    axis = trace_list.replace(hop, b"").replace(
        b"</edXML:TraceHeaderList>",
        hop.replace(b"000.00.00.G22", b"null") + b"</edXML:TraceHeaderList>",
    )
    data = data.replace(trace_list, axis).replace(
        b"<edXML:SteeringType>", b"<edXML:VxpInfo>saas</edXML:VxpInfo><edXML:SteeringType>"
    )
    verdict = validator.validate(data)
    assert verdict.problems == ()
    assert sorted(w.code for w in verdict.warnings) == [
        "element-order",
        "trace-organ-id-missing",
        "unknown-element",
    ]
    assert verdict.envelope is not None and verdict.envelope.recipient_ids == THREE
