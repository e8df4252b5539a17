"""A snapshot of the directory with lookups by either code form. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from broker.directory.model import Agency, SdkSystem, Token


@dataclass(frozen=True, slots=True)
class Change:
    """The last change of one agency's directory record: `at_ms` is when it was made,
    `removed` holds the agency as it was when its record was removed (None: it is
    there)."""

    at_ms: int
    removed: Agency | None = None


@dataclass(frozen=True)
class Directory:
    """Agencies by code (QĐ 20/2020) with an index by QCVN 102 code, and when each
    last changed (for the SDK's getSynchronizeUnit)."""

    by_code: Mapping[str, Agency] = field(default_factory=dict)
    by_code102: Mapping[str, Agency] = field(default_factory=dict)
    changes: Mapping[str, Change] = field(default_factory=dict)

    @classmethod
    def of(cls, agencies: Iterable[Agency]) -> Directory:
        by_code = {a.code: a for a in agencies}
        by_102 = {a.code102: a for a in by_code.values() if a.code102}
        return cls(by_code, by_102)

    def find(self, code: str) -> Agency | None:
        """The agency named by either of its codes."""
        return self.by_code.get(code) or self.by_code102.get(code)

    def token(self, token_id: str) -> tuple[Agency, Token] | None:
        """The API token with this id and its agency (every request looks one up)."""
        return self._tokens.get(token_id)

    def system(self, system_id: str) -> tuple[Agency, SdkSystem] | None:
        """The SDK system with this id and its agency."""
        return self._systems.get(system_id)

    @cached_property
    def _tokens(self) -> dict[str, tuple[Agency, Token]]:
        found: dict[str, tuple[Agency, Token]] = {}
        for agency in self:  # in code order: the first agency holding an id keeps it
            for token in agency.tokens:
                found.setdefault(token.id, (agency, token))
        return found

    @cached_property
    def _systems(self) -> dict[str, tuple[Agency, SdkSystem]]:
        found: dict[str, tuple[Agency, SdkSystem]] = {}
        for agency in self:
            for system in agency.systems:
                found.setdefault(system.system_id, (agency, system))
        return found

    def owned_by(self, agency: Agency, system_id: str) -> list[Agency]:
        """The agencies SDK system `system_id` of `agency` acts for: its own agency,
        then those it registered (registerAgency), in code order."""
        return [agency, *(a for a in self if a.registered_by == system_id and a is not agency)]

    def noted(self, code: str, at_ms: int, removed: Agency | None = None) -> Directory:
        """The same directory, knowing that `code` last changed at `at_ms`."""
        changes = {**self.changes, code: Change(at_ms, removed)}
        return Directory(self.by_code, self.by_code102, changes)

    def __len__(self) -> int:
        return len(self.by_code)

    def __iter__(self) -> Iterator[Agency]:
        return iter(sorted(self.by_code.values(), key=lambda a: a.code))

    def children(self, code: str) -> list[Agency]:
        return [a for a in self if a.parent == code]

    def ancestors(self, agency: Agency) -> list[Agency]:
        """Parents up to the root (stops at a cycle or a missing parent)."""
        out: list[Agency] = []
        seen = {agency.code}
        node = agency
        while node.parent and node.parent not in seen:
            parent = self.by_code.get(node.parent)
            if parent is None:
                break
            out.append(parent)
            seen.add(parent.code)
            node = parent
        return out

    def with_agency(self, agency: Agency) -> Directory:
        by_code = dict(self.by_code)
        old = by_code.get(agency.code)
        by_code[agency.code] = agency
        by_102 = dict(self.by_code102)
        if old is not None and old.code102 and by_102.get(old.code102) is old:
            del by_102[old.code102]
        if agency.code102:
            by_102[agency.code102] = agency
        return Directory(by_code, by_102, self.changes)

    def without(self, code: str) -> Directory:
        old = self.by_code.get(code)
        if old is None:
            return self
        by_code = {k: v for k, v in self.by_code.items() if k != code}
        by_102 = {k: v for k, v in self.by_code102.items() if v is not old}
        return Directory(by_code, by_102, self.changes)

    def conflicts(self, agency: Agency) -> list[str]:
        """Why adding `agency` would make lookups ambiguous, if it would."""
        out = []
        if agency.code102:
            holder = self.by_code102.get(agency.code102) or self.by_code.get(agency.code102)
            if holder is not None and holder.code != agency.code:
                out.append(f"code102 {agency.code102} already names {holder.code}")
        other = self.by_code102.get(agency.code)
        if other is not None and other.code != agency.code:
            out.append(f"code {agency.code} is already the code102 of {other.code}")
        if agency.parent == agency.code:
            out.append("an agency cannot be its own parent")
        return out
