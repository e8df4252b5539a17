"""The SDK's directory operations: the agency lists, getSynchronizeUnit, and
registerAgency/deleteAgency for a system an administrator allowed to manage its own
sub-agencies.

registerAgency's body is the one thing the SDK sends that its HMAC does not cover
(the signed headers are only systemid, timestamp and Content-Type, the same for every
such call), so it is taken only over HTTPS, where nobody on the path can swap it.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from adapters.http_api.envelopes import read_body
from adapters.http_api.sdk_answers import Operation, SdkAnswer
from adapters.http_api.sdk_documents import vn_time
from broker import vdxp
from broker.clock import now_ms
from broker.core.errors import AccessRefused, BadRequest, InputRefused, NotFound
from broker.core.problems import Problem
from broker.directory.auth import SdkCall
from broker.directory.book import Directory
from broker.directory.model import CODE, CODE102, Agency, agency_from_mapping
from broker.directory.records import removal_record
from broker.runtime import Runtime
from broker.state.directory import put_agencies

CENTER_CODE = "docbroker"  # getSynchronizeUnit's centerCode: which axis lists the unit


def listed(directory: Directory, agency: Agency, *, removed: bool = False) -> vdxp.ListedAgency:
    change = directory.changes.get(agency.code)
    return vdxp.ListedAgency(
        code=agency.code,
        code102=agency.code102,
        name=agency.name,
        pid=agency.parent,
        mail=agency.email,
        # the time of the last change in epoch seconds: the same on every instance
        # (unlike offsets, which are per partition) and an int, as the SDK reads it
        version=change.at_ms // 1000 if change else 0,
        modified=vn_time(change.at_ms) if change else "",
        deleted=removed,
    )


async def agencies_102(request: web.Request, runtime: Runtime, call: SdkCall) -> SdkAnswer:
    """getAgenciesList: every active agency, its code in the QCVN 102 form."""
    d = runtime.directory.current
    items = [listed(d, a).qcvn102() for a in d if a.active]
    return SdkAnswer(vdxp.answer_ok("getAgenciesList", data=items))


async def agencies_qd20(request: web.Request, runtime: Runtime, call: SdkCall) -> SdkAnswer:
    """getAgenciesListQD20: every active agency, its code in the QĐ 20/2020 form."""
    d = runtime.directory.current
    items = [listed(d, a).qd20() for a in d if a.active]
    return SdkAnswer(vdxp.answer_ok("getAgenciesListQD20", data=items))


async def synchronize_units(request: web.Request, runtime: Runtime, call: SdkCall) -> SdkAnswer:
    """getSynchronizeUnit: every agency with the version of its last change (when it
    was made, in epoch seconds: it only grows), and the agencies removed since this
    instance started, `deleted`; in the order of their versions. (A parameter named
    `version` cannot be used to ask for changes only: the SDK's own XroadVnpt-version
    header would collide with it.)"""
    d = runtime.directory.current
    units = [listed(d, a) for a in d]
    units += [
        listed(d, c.removed, removed=True) for c in d.changes.values() if c.removed is not None
    ]
    items = [u.unit(CENTER_CODE) for u in sorted(units, key=lambda u: u.version)]
    return SdkAnswer(vdxp.answer_ok("getSynchronizeUnit", data=items))


# -- a system's own sub-agencies ----------------------------------------------------


def _may_manage(call: SdkCall) -> None:
    if not call.system.manage_agencies:
        raise AccessRefused.because(
            "forbidden",
            f"system {call.system.system_id} may not register or delete agencies (an "
            "administrator can allow it: docbroker agencies system set --manage-agencies)",
        )


def registered_agency(call: SdkCall, directory: Directory, data: dict[str, Any]) -> Agency:
    """The agency a registerAgency body describes, under an agency the system acts for."""
    code = str(data.get("code") or "").strip()
    parent_code = str(data.get("pid") or data.get("parent") or call.agency.code).strip()
    parent = call.acts_for(parent_code)
    if parent is None:
        raise AccessRefused.because(
            "forbidden", f"system {call.system.system_id} does not act for parent {parent_code}"
        )
    existing = directory.find(code) if CODE.match(code) else None
    if existing is not None and existing.registered_by != call.system.system_id:
        raise InputRefused([Problem("invalid-value", f"agency {code} already exists")])
    code102 = str(data.get("code102") or data.get("oldCode") or "").strip()
    if code102 and not CODE102.match(code102):
        raise InputRefused([Problem("invalid-value", f"code102 {code102!r} is not a code")])
    agency, problems = agency_from_mapping(
        {
            "code": code,
            "name": data.get("name"),
            "code102": code102,
            "parent": parent.code,
            "level": data.get("level") or "",
            "email": data.get("mail") or data.get("email") or "",
            "telephone": data.get("phone") or "",
            "address": data.get("address") or "",
            "website": data.get("website") or "",
            "registered_by": call.system.system_id,
        },
        "registerAgency",
    )
    if agency is None:
        raise InputRefused(problems)
    conflicts = directory.without(code).conflicts(agency)
    if conflicts:
        raise InputRefused([Problem("invalid-value", "; ".join(conflicts))])
    return agency


async def register_agency(request: web.Request, runtime: Runtime, call: SdkCall) -> SdkAnswer:
    """registerAgency: a sub-agency of the system, with a JSON body (code, name, mail,
    pid: the parent's id, default the system's own agency; code102)."""
    _may_manage(call)
    if not call.secure:
        raise AccessRefused.because(
            "insecure-transport",
            "registerAgency's body is not covered by the request signature: HTTPS only",
        )
    try:
        data = json.loads(await read_body(request, request.read) or b"{}")
    except ValueError as exc:
        raise BadRequest(f"the registerAgency body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the registerAgency body must be a JSON object")
    agency = registered_agency(call, runtime.directory.current, data)
    actor = f"sdk:{call.system.system_id}"
    await put_agencies(runtime.log, runtime.topics.directory, [agency], actor)
    await runtime.directory.follower.caught_up(runtime.settings.http.read_your_writes_timeout)
    return SdkAnswer(vdxp.answer_ok("registerAgency", id=agency.code))


async def delete_agency(request: web.Request, runtime: Runtime, call: SdkCall) -> SdkAnswer:
    """deleteAgency: remove a sub-agency the system registered (signed `code` or `id`)."""
    _may_manage(call)
    code = call.params.get("code") or call.params.get("id")
    if not code:
        raise BadRequest(f"{vdxp.PREFIX}code (or id) is required, and signed")
    agency = runtime.directory.current.find(code)
    if agency is None:
        raise NotFound(f"no agency {code}")
    if agency.registered_by != call.system.system_id:
        raise AccessRefused.because(
            "forbidden", f"{agency.code} was not registered by system {call.system.system_id}"
        )
    actor = f"sdk:{call.system.system_id}"
    await runtime.log.append(
        [removal_record(runtime.topics.directory, agency.code, actor, now_ms())]
    )
    await runtime.directory.follower.caught_up(runtime.settings.http.read_your_writes_timeout)
    return SdkAnswer(vdxp.answer_ok("deleteAgency", id=agency.code))


OPERATIONS: dict[str, Operation] = {
    "getAgenciesList": agencies_102,
    "getAgenciesListQD20": agencies_qd20,
    "getSynchronizeUnit": synchronize_units,
    "registerAgency": register_agency,
    "deleteAgency": delete_agency,
}
