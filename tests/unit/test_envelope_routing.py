"""Reading the routing fields of an edXML package, by namespace."""

from __future__ import annotations

import pytest

from broker.edxml.envelope import Kind, read_routing
from broker.errors import InputRefused
from tests.edxml_samples import NS, document, status


class TestReadRouting:
    def test_document(self) -> None:
        view = read_routing(document(recipients=("A.1", "B.2")))
        assert view.kind is Kind.DOCUMENT
        assert view.sender == "000.00.00.H35"
        assert view.recipients == ("A.1", "B.2")
        assert view.document_id == "000.00.00.H35,2026/11/24,12/UBND-VP"

    def test_duplicate_recipients_are_routed_once(self) -> None:
        assert read_routing(document(recipients=("A.1", "A.1"))).recipients == ("A.1",)

    def test_status_answers_response_for(self) -> None:
        view = read_routing(status(sender="X.1", answers="Y.2", document_id="D-1"))
        assert view.kind is Kind.STATUS
        assert (view.sender, view.recipients, view.document_id) == ("X.1", ("Y.2",), "D-1")

    def test_status_element_form_is_read(self) -> None:
        """One provincial system sends edXML:Status in place of MessageHeader."""
        data = status().replace(b"edXML:MessageHeader", b"edXML:Status")
        assert read_routing(data).kind is Kind.STATUS

    def test_prefix_does_not_matter(self) -> None:
        data = document().replace(b"edXML:", b"x:").replace(b"xmlns:edXML", b"xmlns:x")
        assert read_routing(data).recipients == ("000.00.01.H35",)

    def test_wrong_namespace(self) -> None:
        data = document().replace(NS.encode(), b"urn:other")
        with pytest.raises(InputRefused) as info:
            read_routing(data)
        assert info.value.code == "wrong-namespace"

    @pytest.mark.parametrize(
        ("data", "fragment"),
        [
            (document(recipients=()), "To/OrganId"),
            (document(sender=""), "From/OrganId"),
            (document(document_id=""), "DocumentId"),
        ],
    )
    def test_missing_fields_are_named_with_their_path(self, data: bytes, fragment: str) -> None:
        with pytest.raises(InputRefused) as info:
            read_routing(data)
        problems = info.value.problems
        assert any(p.code == "missing-field" and fragment in p.message for p in problems)
        assert all(p.location and p.location.path for p in problems)
