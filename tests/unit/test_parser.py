"""The hardened parser refuses what is not plain, well-formed XML, with a location."""

from __future__ import annotations

import pytest

from broker.core.errors import InputRefused
from broker.edxml.parser import parse_untrusted


def refused(data: bytes) -> InputRefused:
    with pytest.raises(InputRefused) as info:
        parse_untrusted(data)
    return info.value


class TestParseUntrusted:
    def test_parses_plain_xml(self) -> None:
        assert parse_untrusted(b"<a><b>x</b></a>").getroot().tag == "a"

    @pytest.mark.parametrize("data", [b"", b"   \n\t"])
    def test_empty_input(self, data: bytes) -> None:
        assert refused(data).code == "empty-input"

    def test_not_well_formed_has_line_and_column(self) -> None:
        err = refused(b"<a>\n  <b></a>")
        problem = err.problems[0]
        assert problem.code == "not-well-formed"
        assert problem.location is not None and problem.location.line == 2
        assert problem.location.column is not None
        assert not problem.message.endswith("column 9"), "the position is in location only"

    def test_stray_bytes_before_the_prolog(self) -> None:
        """Real traffic: `1212<?xml ...` (the broken VNPT sample) is refused at line 1."""
        err = refused(b'1212<?xml version="1.0" encoding="UTF-8"?>\n<a/>')
        assert err.code == "not-well-formed"
        assert err.problems[0].location.line == 1  # type: ignore[union-attr]

    def test_doctype_is_refused(self) -> None:
        assert refused(b"<!DOCTYPE a [<!ELEMENT a ANY>]><a/>").code == "dtd-forbidden"

    def test_entity_expansion_is_not_performed(self) -> None:
        """A billion-laughs document is refused without expanding anything."""
        lol = (
            b'<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
            + b"".join(
                b'<!ENTITY %s "%s">' % (bytes([98 + i]), (b"&" + bytes([97 + i]) + b";") * 10)
                for i in range(8)
            )
            + b"]><l>&i;</l>"
        )
        assert refused(lol).code == "dtd-forbidden"

    def test_external_entity_is_not_fetched(self, tmp_path: object) -> None:
        data = b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>'
        assert refused(data).code == "dtd-forbidden"

    def test_undeclared_prefix_is_not_well_formed(self) -> None:
        """Real traffic: an undeclared `xlink:` prefix (the broken VNPT sample)."""
        err = refused(b"<a><xlink:b/></a>")
        assert err.code == "not-well-formed"
        assert "xlink" in err.problems[0].message
