"""External agencies from the national axis's agency list into the directory.

The pure part (`external_changes`) compares the axis's list with the directory:
agencies outside the province are added (local = false: routed upstream) or
brought up to date (name, parent, code, contact); the province's own agencies
are never touched, since the province is the authority on them. Agencies that
disappear from the axis's list are left as they are (an administrator suspends
them): a short or failed answer must not cut the province off. The shell part
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
from broker.directory.view import change_agencies
from broker.log.interface import DurableLog

log = structlog.get_logger(__name__)

ACTOR = "national-axis"


def pair_lists(
    by102: Sequence[Mapping[str, Any]], by_qd20: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One entry per agency with both codes: the two lists name the same agencies, in
    QCVN 102 and in QĐ 20 form; they are paired by name (in order among equal names).
    An agency only in the QCVN 102 list keeps that code as its code too."""
    qd20_by_name: dict[str, list[Mapping[str, Any]]] = {}
    for entry in by_qd20:
        qd20_by_name.setdefault(str(entry.get("name", "")), []).append(entry)
    code_of_102: dict[str, str] = {}
    out = []
    for entry in by102:
        code102 = str(entry.get("code") or "")
        same = qd20_by_name.get(str(entry.get("name", "")), [])
        twin = same.pop(0) if same else None
        code = str(twin.get("code")) if twin else code102
        code_of_102[code102] = code
        out.append({**entry, "code": code, "code102": code102})
    for item in out:
        item["parent"] = code_of_102.get(str(item.get("pid") or ""), "")
    return out


def external_changes(directory: Directory, axis: Sequence[Mapping[str, Any]]) -> list[Agency]:
    """Agencies to write so that the directory knows every external agency the axis
    lists; entries that are not valid agencies are skipped."""
    changed: list[Agency] = []
    for entry in axis:
        code, code102 = str(entry.get("code") or ""), str(entry.get("code102") or "")
        name = str(entry.get("name") or "").strip()
        if not name or not CODE.match(code) or (code102 and not CODE102.match(code102)):
            continue
        existing = directory.find(code) or (directory.find(code102) if code102 else None)
        if existing is not None and existing.local:
            continue
        fields = {
            "name": name,
            "parent": str(entry.get("parent") or ""),
            "level": str(entry.get("level") or ""),
            "email": str(entry.get("mail") or ""),
            "telephone": str(entry.get("phone") or ""),
            "address": str(entry.get("address") or ""),
            "website": str(entry.get("website") or ""),
        }
        if fields["parent"] == code:
            fields["parent"] = ""
        if existing is None:
            agency = Agency(
                code=code,
                code102=code102,
                kind=AgencyKind.OTHER,
                local=False,
                status=AgencyStatus.ACTIVE,
                **fields,
            )
            if directory.conflicts(agency):
                continue
        else:
            agency = replace(existing, code102=existing.code102 or code102, **fields)
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
