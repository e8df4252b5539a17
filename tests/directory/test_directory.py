"""Agency records, lookups by either code form, import and export."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.directory.book import Directory
from broker.directory.io import check_unique, parse_csv, parse_file, parse_toml, to_csv, to_toml
from broker.directory.model import Agency, AgencyKind, AgencyStatus, agency_from_mapping
from broker.directory.routing import Route, route_envelope
from broker.edxml.model import Envelope, Kind, Organization

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "config" / "directory").glob("lai-chau*.toml"))
SECOND_PROVINCE = ROOT / "config" / "directory" / "lao-cai-demo.toml"


def agency(code: str, code102: str = "", **kw) -> Agency:
    return Agency(code=code, name=f"Agency {code}", code102=code102, **kw)


class TestRecords:
    def test_from_mapping(self) -> None:
        a, problems = agency_from_mapping(
            {
                "code": "H35.S01",
                "name": "Văn phòng",
                "code102": "000.00.01.H35",
                "kind": "state",
                "local": "false",
                "certificates": "AB" * 32,
            }
        )
        assert problems == []
        assert a is not None and a.local is False and a.certificates == ("ab" * 32,)

    @pytest.mark.parametrize(("data", "words"), [
        ({"code": "h35", "name": "x"}, "not a QĐ 20/2020 code"),
        ({"code": "H35"}, "has no name"),
        ({"code": "H35", "name": "x", "kind": "church"}, "kind must be one of"),
        ({"code": "H35", "name": "x", "status": "gone"}, "status must be one of"),
        ({"code": "H35", "name": "x", "signature_policy": "always"}, "signature_policy"),
        ({"code": "H35", "name": "x", "certificates": ["xyz"]}, "64 hex digits"),
        ({"code": "H35", "name": "x", "colour": "red"}, "unknown field"),
    ])  # fmt: skip
    def test_bad_records_are_named(self, data: dict, words: str) -> None:
        a, problems = agency_from_mapping(data, "row 3")
        assert a is None and any(words in p.message and "row 3" in p.message for p in problems)


class TestDirectory:
    def test_either_code_finds_the_agency(self) -> None:
        d = Directory.of(
            [agency("H35", "000.00.00.H35"), agency("H35.S01", "000.00.01.H35", parent="H35")]
        )
        assert d.find("000.00.01.H35") is d.find("H35.S01")
        assert [a.code for a in d.ancestors(d.find("H35.S01"))] == ["H35"]
        assert [a.code for a in d.children("H35")] == ["H35.S01"]

    def test_updates_and_removals_keep_the_index_right(self) -> None:
        d = Directory.of([agency("A", "1.A")])
        d = d.with_agency(agency("A", "2.A"))
        assert d.find("1.A") is None and d.find("2.A").code == "A"
        assert d.without("A").find("2.A") is None

    def test_conflicts(self) -> None:
        d = Directory.of([agency("A", "000.00.01.H35")])
        assert d.conflicts(agency("B", "000.00.01.H35"))
        assert d.conflicts(agency("B", parent="B"))
        assert d.conflicts(agency("A", "000.00.01.H35")) == []

    def test_a_hierarchy_of_any_depth(self) -> None:
        chain = [agency("L0")] + [agency(f"L{i}", parent=f"L{i - 1}") for i in range(1, 6)]
        d = Directory.of(chain)
        assert len(d.ancestors(d.find("L5"))) == 5


class TestFiles:
    @pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
    def test_the_example_directories_load(self, path: Path) -> None:
        agencies, problems = parse_file(path.name, path.read_text(encoding="utf-8"))
        assert problems == [] and check_unique(agencies) == []
        d = Directory.of(agencies)
        province = d.find("000.00.00.H35")
        assert province is not None and province.code == "H35"
        assert all(d.find(a.parent) for a in agencies if a.parent)
        kinds = {a.kind for a in agencies}
        assert {AgencyKind.STATE, AgencyKind.ASSOCIATION, AgencyKind.SOCIO_POLITICAL} <= kinds
        assert any(not a.local for a in agencies)

    def test_the_second_provinces_demo_directory_loads(self) -> None:
        """Lào Cai's few agencies, for the national axis simulator and its tests."""
        agencies, problems = parse_file(SECOND_PROVINCE.name, SECOND_PROVINCE.read_text())
        assert problems == [] and check_unique(agencies) == []
        d = Directory.of(agencies)
        assert all(a.local for a in agencies) and all(
            d.find(a.parent) for a in agencies if a.parent
        )
        assert d.find("000.00.00.H36") is not None

    def test_toml_and_csv_round_trip(self) -> None:
        original = [
            agency("H35", "000.00.00.H35", email="a@b.vn"),
            agency(
                "H35.S01",
                "000.00.01.H35",
                parent="H35",
                local=False,
                status=AgencyStatus.SUSPENDED,
                certificates=("ab" * 32,),
                strict=True,
            ),
            agency("H35.S02", "000.00.02.H35", parent="H35", strict=False),
        ]
        assert parse_toml(to_toml(original), "t")[0] == original
        assert parse_csv(to_csv(original), "c")[0] == original

    @pytest.mark.parametrize(("raw", "strict"), [(True, True), ("false", False), ("", None)])
    def test_strict_is_true_false_or_the_configured_default(self, raw: object, strict) -> None:
        a, problems = agency_from_mapping({"code": "H35", "name": "x", "strict": raw})
        assert problems == [] and a is not None and a.strict is strict
        assert agency_from_mapping(a.to_dict())[0] == a  # JSON, as in the directory topic
        assert ("strict = " in to_toml([a])) is (strict is not None)

    def test_duplicates_in_a_file(self) -> None:
        problems = check_unique([agency("A", "1"), agency("B", "1"), agency("A")])
        assert len(problems) == 2


class TestRouting:
    def directory(self) -> Directory:
        return Directory.of([
            agency("H35", "000.00.00.H35"), agency("H35.S01", "000.00.01.H35"),
            agency("H35.S02", "000.00.02.H35", status=AgencyStatus.SUSPENDED),
            agency("G22", "000.00.00.G22", local=False),
        ])  # fmt: skip

    def env(self, *to: str) -> Envelope:
        return Envelope(
            Kind.DOCUMENT,
            Organization("000.00.00.H35"),
            tuple(Organization(t) for t in to),
            document_id="D",
        )

    def test_each_recipient_independently(self) -> None:
        decisions = route_envelope(
            self.env("H35.S01", "000.00.00.G22", "000.00.02.H35", "X.9", "000.00.00.H35"),
            self.directory(),
        )
        assert [(d.route, d.agency, d.code) for d in decisions] == [
            (Route.MAILBOX, "H35.S01", ""),
            (Route.UPSTREAM, "G22", ""),
            (Route.REFUSED, "H35.S02", "recipient-suspended"),
            (Route.REFUSED, "", "unknown-recipient"),
            (Route.REFUSED, "H35", "recipient-is-sender"),
        ]

    def test_one_agency_named_by_both_codes_gets_it_once(self) -> None:
        decisions = route_envelope(self.env("H35.S01", "000.00.01.H35"), self.directory())
        assert len(decisions) == 1
