"""The simulator's HTTP side: a request in the SDK's exact form (method, signed
headers, body) becomes a `Call` of an operation, its answer or failure the bytes the
SDK reads; `/_sim/…` sets faults and shows counters.

A request is authenticated as the SDK signs it and nothing more: the headers named
in `XroadVnpt-sign-header-key` and the HMAC of the sign header under the system's
secret (`broker.vdxp.read_signed`). The SDK sends no nonce and a timestamp fixed
when its service object was built, so neither is required or checked.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from aiohttp import web

from adapters.national_axis.simulator.config import SystemConfig
from adapters.national_axis.simulator.faults import Faults, chance, faults_from_json
from adapters.national_axis.simulator.operations import OPERATIONS, AxisFail, Call, Raw
from adapters.national_axis.simulator.state import Simulator
from broker import vdxp

log = structlog.get_logger(__name__)

SIMULATOR = web.AppKey("axis_simulator", Simulator)


class _Dropped(Exception):
    """The connection was closed on purpose: there is nothing to answer."""


def authenticate(
    request: web.Request, sim: Simulator
) -> tuple[SystemConfig, vdxp.SignedParameters]:
    """The calling system and what it signed, or AxisFail Unauthorized (401)."""
    every: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        every.setdefault(name.lower(), []).append(value)
    try:
        signed = vdxp.read_signed(request.headers, every)
    except vdxp.SignatureError as exc:
        raise _unauthorized(str(exc)) from None
    system_id = signed.get("systemid")
    if not system_id:
        raise _unauthorized(f"{vdxp.PREFIX}systemid must be signed")
    system = sim.systems.get(system_id)
    if system is None:
        raise _unauthorized(f"unknown system id {system_id}")
    if not signed.matches(system.secret):
        raise _unauthorized("the request signature does not match (wrong secret?)")
    return system, signed


def _unauthorized(reason: str) -> AxisFail:
    return AxisFail("Unauthorized", reason, 401)


async def _inject(request: web.Request, sim: Simulator, name: str, phase: str) -> None:
    """Delay, drop or fail this request if the fault settings say so."""
    faults = sim.faults
    if faults.phase != phase or not faults.applies_to(name):
        return
    if faults.delay_seconds:
        await asyncio.sleep(faults.delay_seconds)
    if chance(sim.rng, faults.drop_rate):
        log.info("axis simulator drops a connection (fault injection)", operation=name)
        if request.transport is not None:
            request.transport.close()
        raise _Dropped
    if chance(sim.rng, faults.fail_rate):
        raise AxisFail(faults.fail_code, "injected fault", faults.fail_status)


async def _answer(request: web.Request, sim: Simulator, name: str) -> web.StreamResponse:
    method, operation = OPERATIONS[name]
    if request.method != method:
        raise AxisFail("MethodNotAllowed", f"{name} is called with {method}", 405)
    body = await request.read()  # all of it, also when refused: the SDK sends it first
    await _inject(request, sim, name, "before")
    try:
        caller, signed = authenticate(request, sim)
    except AxisFail as exc:
        sim.refused += 1
        log.info("axis simulator refused a request", operation=name, reason=str(exc))
        raise
    answer = await operation(Call(sim, caller, signed, body, time.time_ns() // 1_000_000))
    await _inject(request, sim, name, "after")
    if isinstance(answer, Raw):
        return web.Response(body=answer.body, content_type="application/octet-stream")
    return _json(answer)


def _json(answer: dict[str, object], status: int = 200) -> web.Response:
    """An answer as the SDK reads it (ASCII JSON: sendEdoc's reader is US-ASCII)."""
    return web.Response(
        body=vdxp.answer_bytes(answer), status=status, content_type="application/json"
    )


async def handle_operation(request: web.Request) -> web.StreamResponse:
    """Any `/<operation>`: every failure is answered in the SDK's FAIL form, with the
    fields that operation's reader requires."""
    sim = request.app[SIMULATOR]
    name = request.match_info["operation"]
    known = name in OPERATIONS
    sim.requests[name if known else "(unknown)"] += 1
    try:
        if not known:
            offered = ", ".join(OPERATIONS)
            raise AxisFail("UnknownOperation", f"no operation {name}; offered: {offered}", 404)
        return await _answer(request, sim, name)
    except AxisFail as exc:
        return _json(vdxp.answer_fail(name, exc.code, str(exc)), exc.http_status)
    except _Dropped:
        raise asyncio.CancelledError from None


async def set_faults(request: web.Request) -> web.StreamResponse:
    """POST /_sim/faults: replace the fault settings."""
    sim = request.app[SIMULATOR]
    try:
        sim.faults = faults_from_json(await request.json())
    except ValueError as exc:  # includes a body that is not JSON
        return web.json_response({"error": str(exc)}, status=400)
    log.info("axis simulator faults set", **sim.faults.to_json())
    return web.json_response(sim.faults.to_json())


async def clear_faults(request: web.Request) -> web.StreamResponse:
    """DELETE /_sim/faults: no more faults."""
    sim = request.app[SIMULATOR]
    sim.faults = Faults()
    return web.json_response(sim.faults.to_json())


async def get_faults(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[SIMULATOR].faults.to_json())


async def get_state(request: web.Request) -> web.StreamResponse:
    """GET /_sim/state: counters for tests."""
    return web.json_response(request.app[SIMULATOR].state())


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "OK"})
