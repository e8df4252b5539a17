"""The agency directory: who exists, where they sit, how to reach and trust them.

An agency has a code in the QĐ 20/2020 form (its key) and usually one in the
QCVN 102 form; either finds it. The hierarchy is data (parent links) and the
level is a label: no three-level tree is assumed (districts were abolished on
1 July 2025).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from ipaddress import ip_address, ip_network
from typing import Any

from broker.core.problems import Problem

CODE = re.compile(r"^[0-9A-Z.]{1,35}$")
# Real traffic carries odd ids (`28.22.H17`, `vxp.saas.03`): the 102 form is only bounded.
CODE102 = re.compile(r"^[0-9A-Za-z._-]{1,64}$")
FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


class AgencyKind(StrEnum):
    STATE = "state"  # cơ quan nhà nước
    ASSOCIATION = "association"  # hội
    SOCIO_POLITICAL = "socio-political"  # tổ chức chính trị - xã hội
    OTHER = "other"


class AgencyStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


POLICIES = ("", "required", "optional", "ignored")


@dataclass(frozen=True, slots=True)
class Token:
    """An API token of an agency: only its SHA-256 is kept; its id is public."""

    id: str
    sha256: str
    created_at_ms: int = 0
    expires_at_ms: int = 0  # 0: never
    revoked: bool = False
    label: str = ""


@dataclass(frozen=True, slots=True)
class SdkSystem:
    """A system id of the national-axis SDK surface. Its secret is derived from the
    broker's SDK master key and this salt, never stored.

    The unchanged SDK signs a timestamp fixed for the life of its client object and no
    nonce, so a captured request can be replayed: by default a system is served over
    HTTPS only. An administrator may allow plain HTTP for one system, and only from
    the networks named for it (`networks`, CIDR): then the network, not only the
    secret, stands between an eavesdropper and a forged request."""

    system_id: str
    salt: str
    created_at_ms: int = 0
    expires_at_ms: int = 0
    revoked: bool = False
    plain_http: bool = False  # served over plain HTTP too (from `networks` only)
    networks: tuple[str, ...] = ()  # source networks it may call from; () = anywhere
    manage_agencies: bool = False  # may registerAgency / deleteAgency its sub-agencies

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SdkSystem:
        """From a directory record; `legacy` (docbroker before the SDK's real protocol
        was known: "signs no nonce, HTTPS only") is what every system is now."""
        values = {k: v for k, v in data.items() if k != "legacy"}
        if "networks" in values:
            values["networks"] = tuple(str(ip_network(n, strict=False)) for n in values["networks"])
        return cls(**values)

    def allows_address(self, address: str | None) -> bool:
        """Whether a request from `address` may use this system (any, without networks)."""
        if not self.networks:
            return True
        try:
            ip = ip_address(address or "")
        except ValueError:
            return False
        return any(ip in ip_network(n) for n in self.networks)


_CREDENTIALS: dict[str, Any] = {"tokens": Token, "systems": SdkSystem.from_mapping}


@dataclass(frozen=True, slots=True)
class Agency:
    code: str  # QĐ 20/2020 form: the key
    name: str
    code102: str = ""  # QCVN 102 form
    parent: str = ""
    level: str = ""  # a label: tỉnh, sở, huyện, xã, hội, ...
    kind: AgencyKind = AgencyKind.STATE
    local: bool = True  # False: outside the province, reached through the national axis
    status: AgencyStatus = AgencyStatus.ACTIVE
    signature_policy: str = ""  # "" = the configured default
    allow_sha1: bool = False
    strict: bool | None = None  # warnings refuse its packages; None = the configured default
    certificates: tuple[str, ...] = ()  # SHA-256 fingerprints (signatures and mTLS)
    tokens: tuple[Token, ...] = ()
    systems: tuple[SdkSystem, ...] = ()
    email: str = ""
    telephone: str = ""
    address: str = ""
    website: str = ""
    # The SDK system that registered it (registerAgency): that system may send and
    # fetch for it, and delete it. "" for agencies an administrator made.
    registered_by: str = ""

    @property
    def active(self) -> bool:
        return self.status is AgencyStatus.ACTIVE

    def codes(self) -> tuple[str, ...]:
        return (self.code, self.code102) if self.code102 else (self.code,)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _CREDENTIALS:
                out[f.name] = [
                    {g.name: _plain(getattr(c, g.name)) for g in fields(c)} for c in value
                ]
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            elif isinstance(value, StrEnum):
                out[f.name] = str(value)
            else:
                out[f.name] = value
        return out


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


FIELDS = tuple(f.name for f in fields(Agency))
_TUPLES = {"certificates"}
# The fields a CSV row carries: credentials are not for spreadsheets.
CSV_FIELDS = tuple(f for f in FIELDS if f not in _CREDENTIALS)
_BOOLS = {"local", "allow_sha1"}
_OPTIONAL_BOOLS = {"strict"}  # absent or empty: None, the configured default


def agency_from_mapping(
    data: Mapping[str, Any], where: str = ""
) -> tuple[Agency | None, list[Problem]]:
    """An agency from plain data (TOML table, CSV row, JSON), or the problems with it."""
    at = f"{where}: " if where else ""
    errors: list[str] = []
    unknown = sorted(set(data) - set(FIELDS) - {"contact"})
    if unknown:
        errors.append(f"unknown field(s) {', '.join(unknown)}")
    contact = data.get("contact") or {}
    merged = {**contact, **{k: v for k, v in data.items() if k != "contact"}}
    values: dict[str, Any] = {}
    for name in FIELDS:
        if name in merged and merged[name] is not None:
            _read_field(name, merged[name], values, errors)
    errors += _field_errors(values)
    if errors:
        return None, [Problem("invalid-value", at + e) for e in errors]
    return Agency(**values), []


_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no", "")


def _read_field(name: str, raw: Any, values: dict[str, Any], errors: list[str]) -> None:
    """One field's value into `values` in its type, or what is wrong with it."""
    if name in _CREDENTIALS:
        kind = _CREDENTIALS[name]
        try:
            values[name] = tuple(
                kind(**item) if isinstance(kind, type) else kind(item) for item in raw
            )
        except (TypeError, ValueError) as exc:
            errors.append(f"{name}: {exc}")
    elif name in _TUPLES:
        items = raw.split(";") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            errors.append(f"{name} must be a list of strings")
        else:
            values[name] = tuple(i.strip().lower() for i in items if i.strip())
    elif name in _BOOLS | _OPTIONAL_BOOLS:
        if name in _OPTIONAL_BOOLS and isinstance(raw, str) and not raw.strip():
            return
        if isinstance(raw, str) and raw.strip().lower() in (*_TRUE, *_FALSE):
            values[name] = raw.strip().lower() in _TRUE
        elif isinstance(raw, bool):
            values[name] = raw
        else:
            errors.append(f"{name} must be true or false, not {raw!r}")
    else:
        values[name] = str(raw).strip()


def _field_errors(values: dict[str, Any]) -> list[str]:
    """What is wrong with the fields read (codes, enums, policy, fingerprints); empty
    enum fields are dropped (their default applies)."""
    errors = []
    code = values.get("code", "")
    if not CODE.match(code):
        errors.append(f"code {code!r} is not a QĐ 20/2020 code ([0-9A-Z.], at most 35 characters)")
    if not values.get("name"):
        errors.append(f"agency {code or '?'} has no name")
    if values.get("code102") and not CODE102.match(values["code102"]):
        errors.append(f"code102 {values['code102']!r} is not a valid code")
    for key, enum in (("kind", AgencyKind), ("status", AgencyStatus)):
        if key not in values:
            continue
        if not values[key]:
            del values[key]  # empty: the default
            continue
        try:
            values[key] = enum(values[key])
        except ValueError:
            choices = ", ".join(e.value for e in enum)
            errors.append(f"{key} must be one of {choices}, not {values[key]!r}")
    if values.get("signature_policy", "") not in POLICIES:
        errors.append("signature_policy must be one of required, optional, ignored or empty")
    errors += [
        f"certificate fingerprint {fp!r} is not 64 hex digits"
        for fp in values.get("certificates", ())
        if not FINGERPRINT.match(fp)
    ]
    return errors


def agencies_from_records(
    records: Iterable[Mapping[str, Any]], where: str
) -> tuple[list[Agency], list[Problem]]:
    found: list[Agency] = []
    problems: list[Problem] = []
    for i, row in enumerate(records, 1):
        agency, errs = agency_from_mapping(row, f"{where} #{i}")
        problems += errs
        if agency is not None:
            found.append(agency)
    return found, problems
