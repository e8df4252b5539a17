"""External agencies from the national axis's agency list into the directory.

The pure parts pair the axis's two lists (`pair_lists`: by `id`, parents by
`pid`) and compare them with the directory (`external_changes`): agencies outside
the province are added (local = false: routed upstream) or brought up to date
(name, parent, QCVN 102 code, mail: what the SDK's lists carry); the province's
own agencies are never touched, since the province is the authority on them.
Agencies that disappear from the axis's list are left as they are (an
administrator suspends them): a short or failed answer must not cut the province
off. The shell part
(`sync_directory`) asks the axis and writes the changes through the directory
topic, which every instance follows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import structlog

from adapters.national_axis.client import AxisClient
from broker.directory.book import Directory
from broker.directory.model import CODE, CODE102, Agency, AgencyKind, AgencyStatus
from broker.log.interface import DurableLog
from broker.state.directory import change_agencies

log = structlog.get_logger(__name__)

ACTOR = "national-axis"


def _key(entry: Mapping[str, Any]) -> str:
    """An entry's `id`, which both lists give each agency (its code if it has none)."""
    return str(entry.get("id") or entry.get("code") or "")


def pair_lists(
    by102: Sequence[Mapping[str, Any]], by_qd20: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One entry per agency with both codes, its parent's code and its contact.

    The two lists name the same agencies under the same `id`: getAgenciesListQD20
    gives `code` in the QĐ 20 form and `code102`, getAgenciesList `code` in the
    QCVN 102 form; `pid` is the parent's `id`. An agency in one list only stands
    alone (one only in the QCVN 102 list keeps that code as its code too)."""
    qd20_by_id = {_key(e): e for e in by_qd20}
    qd20_by_102 = {str(e.get("code102")): e for e in by_qd20 if e.get("code102")}
    out: list[dict[str, Any]] = []
    paired: set[str] = set()
    for entry in by102:
        code102 = str(entry.get("code") or "")
        twin = qd20_by_id.get(_key(entry)) or qd20_by_102.get(code102)
        if twin is not None:
            paired.add(_key(twin))
        merged = {**(twin or {}), **entry}
        merged["code"] = str(twin.get("code") or code102) if twin else code102
        merged["code102"] = code102
        out.append(merged)
    for entry in by_qd20:
        if _key(entry) not in paired:
            out.append({**entry, "code102": str(entry.get("code102") or "")})
    code_of_id: dict[str, str] = {}
    for item in out:
        for key in (str(item.get("id") or ""), item["code"], item["code102"]):
            if key:
                code_of_id.setdefault(key, item["code"])
    for item in out:
        item["parent"] = code_of_id.get(str(item.get("pid") or ""), "")
    return out


def external_changes(directory: Directory, axis: Sequence[Mapping[str, Any]]) -> list[Agency]:
    """Agencies to write so that the directory knows every external agency the axis
    lists, with the name, parent and mail it lists (what else an administrator set
    stays); entries that are not valid agencies are skipped."""
    changed: list[Agency] = []
    for entry in axis:
        code, code102 = str(entry.get("code") or ""), str(entry.get("code102") or "")
        name = str(entry.get("name") or "").strip()
        if not name or not CODE.match(code) or (code102 and not CODE102.match(code102)):
            continue
        existing = directory.find(code) or (directory.find(code102) if code102 else None)
        if existing is not None and existing.local:
            continue
        parent = str(entry.get("parent") or "")
        listed = {
            "name": name,
            "parent": "" if parent == code else parent,
            "email": str(entry.get("mail") or ""),
        }
        if existing is None:
            agency = Agency(
                code=code,
                code102=code102,
                kind=AgencyKind.OTHER,
                local=False,
                status=AgencyStatus.ACTIVE,
                **listed,
            )
            if directory.conflicts(agency):
                continue
        else:
            agency = replace(existing, code102=existing.code102 or code102, **listed)
            if agency == existing:
                continue
        changed.append(agency)
        directory = directory.with_agency(agency)
    return changed


async def sync_directory(client: AxisClient, log_: DurableLog, topic: str) -> list[Agency]:
    """Copy the axis's agency list into the directory; returns what changed."""
    by102 = await client.agencies(qd20=False)
    by_qd20 = await client.agencies(qd20=True)
    axis = pair_lists(by102, by_qd20)
    changed = await change_agencies(log_, topic, lambda d: external_changes(d, axis), ACTOR)
    log.info("directory synchronised with the axis", listed=len(axis), changed=len(changed))
    return changed
