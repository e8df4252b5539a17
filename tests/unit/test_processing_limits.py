"""The pipeline step and the record limit: a package that fits may not once forwarded
(its text escaped, `>` written `&gt;`); it is refused, a value like any refusal."""

from __future__ import annotations

from dataclasses import replace

from broker.edxml.model import StatusCode
from tests.edxml_samples import document
from tests.processing_kit import (
    TOPICS,
    VALIDATOR,
    consumed,
    ctx,
    headers,
    on,
    problems_of,
    processor,
)

SENDER, VP, NOI_VU = "000.00.00.H35", "000.00.01.H35", "000.00.02.H35"
LIMIT = 60_000


def escaped_content(characters: int) -> bytes:
    """A document whose Content is `characters` times `>` (one byte each as sent)."""
    data = document(sender=SENDER, recipients=(VP, NOI_VU))
    return data.replace(
        b"<edXML:Content></edXML:Content>",
        b"<edXML:Content>" + b">" * characters + b"</edXML:Content>",
    )


def types(outcome) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(e.type) for e in outcome.events]


class TestTooLargeToForward:
    def test_a_package_too_large_once_forwarded_is_refused_with_a_02(self) -> None:
        """30 kB as sent, 120 kB forwarded, against a 60 kB limit: no delivery, a dead
        letter of the package as sent, the refusal's event and one 02 to the sender;
        the DocumentId is not taken (a smaller version may be sent again)."""
        data = escaped_content(30_000)
        assert len(data) < LIMIT
        out = replace(processor(), max_record_bytes=LIMIT).process(consumed(data), ctx())
        assert out.outcome == "rejected" and out.codes == ("too-large",)
        assert out.dedup == () and out.deliveries == 0
        (dead,) = on(out.records, TOPICS.rejected)
        assert dead.value == data and problems_of(dead) == ["too-large"]
        (status,) = on(out.records, TOPICS.mailbox)
        assert headers(status)["recipient"] == "H35"
        env = VALIDATOR.check(status.value or b"")
        assert env.status_code is StatusCode.REFUSED
        assert "too-large" in env.status_description
        assert types(out) == ["refused", "status-emitted"]

    def test_within_the_limit_it_is_routed(self) -> None:
        data = escaped_content(30_000)
        out = replace(processor(), max_record_bytes=4 * LIMIT).process(consumed(data), ctx())
        assert out.outcome == "routed" and out.deliveries == 2

    def test_the_refusal_of_what_the_log_refused_names_the_sender(self) -> None:
        """When the log refuses an output (a broker whose limit is below the
        configured one), the record's refusal still carries the 02 to its sender."""
        out = processor().too_large(consumed(escaped_content(10)), ctx(), "record of 2 MB")
        assert out.outcome == "rejected" and out.codes == ("too-large",)
        (status,) = on(out.records, TOPICS.mailbox)
        assert headers(status)["recipient"] == "H35"
        assert types(out) == ["refused", "status-emitted"]
