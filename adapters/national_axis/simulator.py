"""A simulator of the national document axis (VDXP), for tests and demos.

docbroker's national-axis client needs something to talk to that is not the real
axis: this is an aiohttp application that answers the operations the official SDK
(SDKVXP) calls, in the same form (EDXML.md, "National axis (VDXP) protocol"):

- `/<operation>` (GET or POST), parameters as `XroadVnpt-<name>` headers, answers
  `{"status": "OK"|"FAIL", "ErrorCode": "0"|<code>, "ErrorDesc": …}`;
- requests signed with a system id and its shared secret (broker.auth), with a
  signed timestamp checked against a 300 s window and signed nonces never reused;
- each configured system serves the `local = true` agencies of a docbroker
  directory file: what is sent to them waits for that system to fetch it
  (getReceivedEdocList, getEdoc, updateStatus done|fail);
- `/_sim/…` lets a test inject faults (errors, dropped connections, delays) and
  read counters.

It is not the real axis and does not try to be: one process, one SQLite file or
memory, secrets in plain text in its configuration, no registerAgency or
getSynchronizeUnit, no validation of the packages it carries (they are bytes),
and `/_sim/` is unauthenticated, so it must listen on 127.0.0.1 only.

Run it: `python -m adapters.national_axis.simulator --config FILE [--host H] [--port N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import random
import signal
import sqlite3
import sys
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from broker.auth import NonceCache, Refusal, signature_matches, signed_values
from broker.config import LoggingSettings
from broker.directory.io import axis_listing, check_unique, parse_file
from broker.directory.model import Agency
from broker.logsetup import configure_logging

log = structlog.get_logger(__name__)

PREFIX = "XroadVnpt-"
REPLAY_WINDOW_MS = 300_000
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # aiohttp's default (1 MiB) is below real packages
VIETNAM = timezone(timedelta(hours=7))
MESSAGE_TYPES = ("edoc", "status")


# -- configuration -------------------------------------------------------------------


class SimulatorConfigError(ValueError):
    """A configuration the simulator cannot run with; the message names file and key."""


@dataclass(frozen=True, slots=True)
class SystemConfig:
    """One system of the axis: who may call as `id`, and the agencies it serves."""

    id: str
    secret: str
    agencies: tuple[Agency, ...] = ()  # the whole directory file; served = the local ones
    directory: Path | None = None  # where the agencies came from (for messages only)

    @property
    def served(self) -> tuple[Agency, ...]:
        """The agencies whose documents this system receives."""
        return tuple(a for a in self.agencies if a.local)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """The whole simulator: its systems, where it keeps state, its random seed."""

    systems: tuple[SystemConfig, ...]
    state_file: Path | None = None  # None: in memory, lost when the process ends
    seed: int | None = None  # seeds fault injection, so tests can be deterministic


_TOP_KEYS = {"state_file", "seed", "system"}
_SYSTEM_KEYS = {"id", "secret", "directory"}


def load_simulator_config(path: str | Path) -> SimulatorConfig:
    """Read a simulator TOML file; relative paths are relative to its folder."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SimulatorConfigError(f"{path}: cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SimulatorConfigError(f"{path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise SimulatorConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    base = path.resolve().parent
    state = data.get("state_file")
    if state is not None and (not isinstance(state, str) or not state):
        raise SimulatorConfigError(f"{path}: state_file must be a non-empty string")
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise SimulatorConfigError(f"{path}: seed must be an integer")
    rows = data.get("system")
    if not isinstance(rows, list) or not rows:
        raise SimulatorConfigError(f"{path}: at least one [[system]] table is required")
    systems = tuple(_system_from(row, path, i, base) for i, row in enumerate(rows))
    config = SimulatorConfig(systems, (base / state).resolve() if state else None, seed)
    problems = config_problems(config)
    if problems:
        raise SimulatorConfigError(f"{path}: " + "; ".join(problems))
    return config


def _system_from(row: object, path: Path, index: int, base: Path) -> SystemConfig:
    where = f"{path}: system[{index}]"
    if not isinstance(row, dict):
        raise SimulatorConfigError(f"{where} must be a table")
    unknown = sorted(set(row) - _SYSTEM_KEYS)
    if unknown:
        raise SimulatorConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in sorted(_SYSTEM_KEYS):
        if not isinstance(row.get(key), str) or not row[key]:
            raise SimulatorConfigError(f"{where}.{key} is required (a non-empty string)")
    directory = (base / row["directory"]).resolve()
    return SystemConfig(row["id"], row["secret"], load_directory(directory, where), directory)


def load_directory(path: Path, where: str = "") -> tuple[Agency, ...]:
    """The agencies of a docbroker directory file (TOML or CSV), or a clear error."""
    at = f"{where}.directory: " if where else ""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SimulatorConfigError(f"{at}{path} cannot be read: {exc}") from exc
    agencies, problems = parse_file(str(path), text)
    problems += check_unique(agencies)
    if problems:
        raise SimulatorConfigError(f"{at}{path}: " + "; ".join(map(str, problems)))
    return tuple(agencies)


def config_problems(config: SimulatorConfig) -> list[str]:
    """What makes a configuration ambiguous: a system id twice, an agency served twice."""
    problems: list[str] = []
    ids = Counter(s.id for s in config.systems)
    problems += [f"system id {i!r} is configured {n} times" for i, n in ids.items() if n > 1]
    owner: dict[str, str] = {}
    for system in config.systems:
        for agency in system.served:
            for code in agency.codes():
                other = owner.setdefault(code, system.id)
                if other != system.id:
                    problems.append(f"agency {code} is served by both {other} and {system.id}")
    return problems


# -- state ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One document for one recipient, as the axis keeps it (without its bytes)."""

    doc_id: str
    sender: str  # `from` as sent
    recipient: str  # `to` as sent
    messagetype: str
    sha256: str
    from_system: str
    to_system: str
    created_ms: int
    status: str = "initial"  # initial | done
    fails: int = 0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    recipient_key TEXT NOT NULL,
    messagetype TEXT NOT NULL,
    body BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    from_system TEXT NOT NULL,
    to_system TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'initial',
    fails INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS entries_inbox ON entries (to_system, messagetype, status);
CREATE INDEX IF NOT EXISTS entries_doc ON entries (doc_id, to_system);
CREATE INDEX IF NOT EXISTS entries_sent ON entries (from_system, sha256, recipient_key);
"""
_MARK_DONE = "UPDATE entries SET status = 'done' WHERE to_system = ? AND doc_id = ?"
_MARK_FAIL = "UPDATE entries SET fails = fails + 1 WHERE to_system = ? AND doc_id = ?"
_MARKED = "SELECT MIN(status), MAX(fails), COUNT(*) FROM entries WHERE to_system = ? AND doc_id = ?"
_ENTRY_COLUMNS = ", ".join(f.name for f in fields(Entry))


class Store:
    """The entries, in SQLite (a file in WAL mode, or memory). Each change is
    committed before the caller answers, so a restart loses nothing it confirmed.
    Calls are synchronous: a simulator's transactions are tiny."""

    def __init__(self, path: Path | None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path) if path else ":memory:")
        if path is not None:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def add(self, entries: Sequence[tuple[Entry, str, bytes]]) -> None:
        """Store entries (each with its recipient key and bytes) in one transaction."""
        with self.db:
            self.db.executemany(
                "INSERT INTO entries (doc_id, sender, recipient, recipient_key, messagetype,"
                " body, sha256, from_system, to_system, created_ms, status, fails)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.doc_id,
                        e.sender,
                        e.recipient,
                        key,
                        e.messagetype,
                        body,
                        e.sha256,
                        e.from_system,
                        e.to_system,
                        e.created_ms,
                        e.status,
                        e.fails,
                    )
                    for e, key, body in entries
                ],
            )

    def already_sent(self, from_system: str, sha256: str, keys: Iterable[str]) -> list[str]:
        """Which of these recipient keys already got these bytes from this system."""
        return [
            key
            for key in keys
            if self.db.execute(
                "SELECT 1 FROM entries WHERE from_system = ? AND sha256 = ? AND recipient_key = ?",
                (from_system, sha256, key),
            ).fetchone()
        ]

    def pending(self, to_system: str, messagetype: str) -> list[Entry]:
        """What waits for a system, oldest first."""
        return self._entries(
            "WHERE to_system = ? AND messagetype = ? AND status != 'done' ORDER BY seq",
            (to_system, messagetype),
        )

    def count_pending(self, to_system: str, messagetype: str) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM entries"
            " WHERE to_system = ? AND messagetype = ? AND status != 'done'",
            (to_system, messagetype),
        ).fetchone()
        return int(row[0])

    def sent(self, from_system: str, messagetype: str | None) -> list[Entry]:
        """What a system sent, newest first."""
        if messagetype is None:
            return self._entries("WHERE from_system = ? ORDER BY seq DESC", (from_system,))
        return self._entries(
            "WHERE from_system = ? AND messagetype = ? ORDER BY seq DESC",
            (from_system, messagetype),
        )

    def body(self, to_system: str, doc_id: str) -> bytes | None:
        row = self.db.execute(
            "SELECT body FROM entries WHERE to_system = ? AND doc_id = ? LIMIT 1",
            (to_system, doc_id),
        ).fetchone()
        return bytes(row[0]) if row else None

    def mark(self, to_system: str, doc_id: str, outcome: str) -> tuple[str, int] | None:
        """Record a transport acknowledgement on all of a system's entries of a docId:
        done is final; fail is counted and leaves them pending. Returns the status and
        the fail count after the change, or None when the system has no such entry."""
        key = (to_system, doc_id)
        with self.db:
            if outcome == "done":
                self.db.execute(_MARK_DONE, key)
            else:
                self.db.execute(_MARK_FAIL, key)
            row = self.db.execute(_MARKED, key).fetchone()
        return (row[0], int(row[1])) if row[2] else None

    def stats(self) -> dict[str, Any]:
        """Counts by message type and status, and fail counts by docId."""
        entries = {t: {"initial": 0, "done": 0} for t in MESSAGE_TYPES}
        for kind, status, n in self.db.execute(
            "SELECT messagetype, status, COUNT(*) FROM entries GROUP BY messagetype, status"
        ):
            entries.setdefault(kind, {})[status] = n
        fails = dict(
            self.db.execute(
                "SELECT doc_id, MAX(fails) FROM entries GROUP BY doc_id HAVING MAX(fails) > 0"
            ).fetchall()
        )
        return {"entries": entries, "fails": fails}

    def _entries(self, clause: str, args: tuple[Any, ...]) -> list[Entry]:
        rows = self.db.execute(f"SELECT {_ENTRY_COLUMNS} FROM entries {clause}", args)  # noqa: S608
        return [Entry(*row) for row in rows]


# -- fault injection -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Faults:
    """What goes wrong, on purpose. `phase` "after" carries the operation out (and
    commits it) before delaying, dropping or failing the answer: a lost answer."""

    fail_rate: float = 0.0
    fail_status: int = 500
    fail_code: str = "ServerError"
    delay_seconds: float = 0.0
    drop_rate: float = 0.0
    operations: frozenset[str] = frozenset()  # empty: all
    phase: str = "before"  # before | after

    def applies_to(self, operation: str) -> bool:
        return not self.operations or operation in self.operations

    def to_json(self) -> dict[str, Any]:
        return {
            "fail_rate": self.fail_rate,
            "fail_status": self.fail_status,
            "fail_code": self.fail_code,
            "delay_seconds": self.delay_seconds,
            "drop_rate": self.drop_rate,
            "operations": sorted(self.operations),
            "phase": self.phase,
        }


def faults_from_json(data: object) -> Faults:
    """Fault settings from a /_sim/faults body; ValueError says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    unknown = sorted(set(data) - set(Faults.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}")
    out = Faults()
    values: dict[str, Any] = {}
    for key in ("fail_rate", "drop_rate"):
        values[key] = _number(data, key, getattr(out, key), 0.0, 1.0)
    values["delay_seconds"] = _number(data, "delay_seconds", 0.0, 0.0, 600.0)
    status = data.get("fail_status", out.fail_status)
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise ValueError("fail_status must be an HTTP status from 200 to 599")
    code = data.get("fail_code", out.fail_code)
    if not isinstance(code, str) or not code:
        raise ValueError("fail_code must be a non-empty string")
    ops = data.get("operations") or []
    if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
        raise ValueError("operations must be a list of operation names")
    strange = sorted(set(ops) - set(OPERATIONS))
    if strange:
        raise ValueError(f"unknown operation(s) {', '.join(strange)}")
    phase = data.get("phase", "before")
    if phase not in ("before", "after"):
        raise ValueError("phase must be before or after")
    return Faults(
        fail_status=status, fail_code=code, operations=frozenset(ops), phase=phase, **values
    )


def _number(data: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = data.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{key} must be a number from {low} to {high}")
    return float(value)


# -- the simulator -------------------------------------------------------------------


class AxisFail(Exception):
    """An operation's FAIL answer: the axis's error code, a reason, an HTTP status."""

    def __init__(self, code: str, message: str, http_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


@dataclass
class Simulator:
    """The state of one running simulator: configuration, entries, counters, faults."""

    config: SimulatorConfig
    store: Store
    rng: random.Random
    faults: Faults = field(default_factory=Faults)
    nonces: NonceCache = field(default_factory=lambda: NonceCache(window_ms=REPLAY_WINDOW_MS))
    requests: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    systems: dict[str, SystemConfig] = field(default_factory=dict)
    # every code (either form) of a served agency -> (serving system, agency)
    routes: dict[str, tuple[SystemConfig, Agency]] = field(default_factory=dict)

    @classmethod
    def build(cls, config: SimulatorConfig) -> Simulator:
        problems = config_problems(config)
        if problems:
            raise SimulatorConfigError("; ".join(problems))
        sim = cls(config, Store(config.state_file), random.Random(config.seed))  # noqa: S311
        for system in config.systems:
            sim.systems[system.id] = system
            for agency in system.served:
                for code in agency.codes():
                    sim.routes[code] = (system, agency)
        return sim

    def authenticate(self, headers: Mapping[str, str]) -> SystemConfig:
        """The calling system, or AxisFail Unauthorized (401)."""
        signed = signed_values(headers)
        if isinstance(signed, Refusal):
            raise _unauthorized(signed.message)
        system_id = signed.get("xroadvnpt-systemid")
        if system_id is None:
            raise _unauthorized(f"{PREFIX}systemid must be signed")
        system = self.systems.get(system_id)
        if system is None:
            raise _unauthorized(f"unknown system id {system_id}")
        if not signature_matches(headers, system.secret):
            raise _unauthorized("the request signature does not match (wrong secret?)")
        self._check_fresh(system_id, signed)
        return system

    def _check_fresh(self, system_id: str, signed: Mapping[str, str]) -> None:
        """A signed timestamp must be recent and a signed nonce new (replay protection)."""
        now = _now_ms()
        stamp = signed.get("xroadvnpt-timestamp")
        if stamp is not None:
            try:
                at = int(stamp)
            except ValueError:
                raise _unauthorized(f"{PREFIX}timestamp must be epoch milliseconds") from None
            if abs(now - at) > REPLAY_WINDOW_MS:
                raise _unauthorized("the request timestamp is more than 300 s from now")
        nonce = signed.get("xroadvnpt-nonce")
        if nonce is not None and not self.nonces.fresh(f"{system_id}:{nonce}", now):
            raise _unauthorized("this nonce was already used (replayed request)")

    def state(self) -> dict[str, Any]:
        """The counters /_sim/state shows."""
        stats = self.store.stats()
        return {
            "entries": stats["entries"],
            "entries_total": sum(n for by in stats["entries"].values() for n in by.values()),
            "requests": dict(self.requests),
            "refused": self.refused,
            "fails": stats["fails"],
            "fails_total": sum(stats["fails"].values()),
            "faults": self.faults.to_json(),
        }


def _unauthorized(reason: str) -> AxisFail:
    return AxisFail("Unauthorized", reason, 401)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


SIMULATOR = web.AppKey("axis_simulator", Simulator)


# -- operations ----------------------------------------------------------------------


Answer = dict[str, Any] | web.StreamResponse
Operation = Callable[[web.Request, Simulator, SystemConfig], Awaitable[Answer]]


def ok(**values: Any) -> dict[str, Any]:
    return {"status": "OK", "ErrorCode": "0", "ErrorDesc": "", **values}


def fail_body(code: str, message: str) -> dict[str, Any]:
    return {"status": "FAIL", "ErrorCode": code, "ErrorDesc": message}


def vn_time(ms: int) -> str:
    """The axis's timestamp form: yyyy/MM/dd HH:mm:ss, Vietnam time."""
    return datetime.fromtimestamp(ms / 1000, VIETNAM).strftime("%Y/%m/%d %H:%M:%S")


def param(request: web.Request, name: str, default: str | None = None) -> str:
    """The parameter `name` (sent as the header XroadVnpt-name)."""
    value = request.headers.get(PREFIX + name, default)
    if value is None:
        raise AxisFail("InvalidParameter", f"the {PREFIX}{name} header is required", 400)
    return value


def message_type(request: web.Request, default: str | None = "edoc") -> str:
    raw = param(request, "messagetype", default).strip().lower()
    if raw not in MESSAGE_TYPES:
        raise AxisFail("InvalidParameter", f"messagetype must be edoc or status, not {raw!r}", 400)
    return raw


def recipients_of(request: web.Request) -> list[str]:
    """`to`: a JSON array of agency codes (either form), duplicates dropped."""
    raw = param(request, "to")
    try:
        codes = json.loads(raw)
    except ValueError:
        codes = None
    if not isinstance(codes, list) or not codes or not all(isinstance(c, str) and c for c in codes):
        raise AxisFail(
            "InvalidParameter", f"to must be a JSON array of agency codes, not {raw!r}", 400
        )
    return list(dict.fromkeys(c.strip() for c in codes))


async def _file_doc(request: web.Request) -> bytes:
    form = await request.post()
    part = form.get("file_doc")
    if not isinstance(part, web.FileField):
        raise AxisFail("InvalidParameter", "the package must be the multipart part file_doc", 400)
    try:
        return part.file.read()
    finally:
        part.file.close()  # a dropped connection would leave it to the garbage collector


async def send_edoc(request: web.Request, sim: Simulator, caller: SystemConfig) -> Answer:
    """sendEdoc: keep the package for each recipient's system (all or nothing)."""
    kind = message_type(request)
    sender = param(request, "from")
    recipients = recipients_of(request)
    data = await _file_doc(request)
    digest = hashlib.sha256(data).hexdigest()
    declared = request.headers.get(PREFIX + "hash-file") or request.headers.get("hash-file")
    if declared and declared.strip().lower() != digest:
        raise AxisFail("InvalidHash", "hash-file is not the SHA-256 of file_doc", 400)
    unknown = [code for code in recipients if code not in sim.routes]
    if unknown:
        raise AxisFail("AgencyNotFound", f"no system serves {', '.join(unknown)}")
    targets = {code: sim.routes[code] for code in recipients}
    repeated = sim.store.already_sent(caller.id, digest, {a.code for _, a in targets.values()})
    if repeated:
        raise AxisFail("ExistDoc", f"this document was already sent to {', '.join(repeated)}")
    doc_id, now = str(uuid.uuid4()), _now_ms()
    keyed: dict[str, tuple[Entry, str, bytes]] = {}
    for code, (system, agency) in targets.items():
        entry = Entry(doc_id, sender, code, kind, digest, caller.id, system.id, now)
        keyed.setdefault(agency.code, (entry, agency.code, data))  # one entry per agency
    sim.store.add(list(keyed.values()))
    log.info(
        "axis simulator took a document",
        doc_id=doc_id,
        sender=sender,
        to=list(targets),
        messagetype=kind,
        system=caller.id,
    )
    return ok(docId=doc_id)


def _listed(e: Entry) -> dict[str, Any]:
    return {
        "docId": e.doc_id,
        "from": e.sender,
        "to": e.recipient,
        "messagetype": e.messagetype,
        "serviceType": "eDoc",
        "created_time": vn_time(e.created_ms),
        "status": e.status,
    }


async def received_list(request: web.Request, sim: Simulator, caller: SystemConfig) -> Answer:
    """getReceivedEdocList: what waits for the caller, of one message type, oldest first."""
    found = sim.store.pending(caller.id, message_type(request))
    return ok(data=[_listed(e) for e in found], total=len(found))


async def sent_list(request: web.Request, sim: Simulator, caller: SystemConfig) -> Answer:
    """getSentEdocList: what the caller sent (one item per recipient), newest first."""
    kind = message_type(request, None) if PREFIX + "messagetype" in request.headers else None
    found = sim.store.sent(caller.id, kind)
    data = [{k: v for k, v in _listed(e).items() if k != "serviceType"} for e in found]
    return ok(data=data, total=len(data))


def _own_body(request: web.Request, sim: Simulator, caller: SystemConfig) -> tuple[str, bytes]:
    doc_id = param(request, "docId")
    data = sim.store.body(caller.id, doc_id)
    if data is None:
        raise AxisFail("NotFound", f"no document {doc_id} for system {caller.id}")
    return doc_id, data


async def get_edoc(request: web.Request, sim: Simulator, caller: SystemConfig) -> Answer:
    """getEdoc: one of the caller's packages, base64 in `data`."""
    doc_id, data = _own_body(request, sim, caller)
    return ok(docId=doc_id, data=base64.b64encode(data).decode("ascii"))


async def download_edoc(request: web.Request, sim: Simulator, caller: SystemConfig) -> Answer:
    """downloadEdoc: the same package as raw bytes (not found: a FAIL body, HTTP 404,
    so that no client mistakes the error for a package)."""
    try:
        _, data = _own_body(request, sim, caller)
    except AxisFail as exc:
        exc.http_status = 404
        raise
    return web.Response(body=data, content_type="application/xml")


async def update_status(request: web.Request, sim: Simulator, caller: SystemConfig) -> Answer:
    """updateStatus: the transport acknowledgement; done takes it off the list."""
    doc_id = param(request, "docId")
    outcome = param(request, "status").strip().lower()
    if outcome not in ("done", "fail"):
        raise AxisFail("InvalidParameter", f"status must be done or fail, not {outcome!r}", 400)
    marked = sim.store.mark(caller.id, doc_id, outcome)
    if marked is None:
        raise AxisFail("NotFound", f"no document {doc_id} for system {caller.id}")
    status, fails = marked
    if outcome == "fail":
        log.info("axis simulator: recipient reported fail", doc_id=doc_id, fails=fails)
    return ok(docId=doc_id, status_doc=status, fails=fails)


async def count_edoc(request: web.Request, sim: Simulator, caller: SystemConfig) -> Answer:
    return ok(total=sim.store.count_pending(caller.id, "edoc"))


async def count_status(request: web.Request, sim: Simulator, caller: SystemConfig) -> Answer:
    return ok(total=sim.store.count_pending(caller.id, "status"))


def agencies_json(sim: Simulator, *, qd20: bool) -> list[dict[str, Any]]:
    """Every served agency, in QĐ 20 codes or QCVN 102 codes (parents likewise)."""
    out: list[dict[str, Any]] = []
    for system in sim.config.systems:
        by_code = {a.code: a for a in system.agencies}
        out += axis_listing(system.served, lambda a, known=by_code: known.get(a.parent), qd20=qd20)
    return out


async def agencies_102(request: web.Request, sim: Simulator, caller: SystemConfig) -> Answer:
    return ok(data=agencies_json(sim, qd20=False))


async def agencies_qd20(request: web.Request, sim: Simulator, caller: SystemConfig) -> Answer:
    return ok(data=agencies_json(sim, qd20=True))


OPERATIONS: dict[str, Operation] = {
    "sendEdoc": send_edoc,
    "getReceivedEdocList": received_list,
    "getEdoc": get_edoc,
    "downloadEdoc": download_edoc,
    "updateStatus": update_status,
    "getSentEdocList": sent_list,
    "countReceiveEdoc": count_edoc,
    "countReceiveStatus": count_status,
    "getAgenciesList": agencies_102,
    "getAgenciesListQD20": agencies_qd20,
}


# -- HTTP ------------------------------------------------------------------------------


class _Dropped(Exception):
    """The connection was closed on purpose: there is nothing to answer."""


async def _inject(request: web.Request, sim: Simulator, name: str, phase: str) -> None:
    """Delay, drop or fail this request if the fault settings say so."""
    faults = sim.faults
    if faults.phase != phase or not faults.applies_to(name):
        return
    if faults.delay_seconds:
        await asyncio.sleep(faults.delay_seconds)
    if _chance(sim.rng, faults.drop_rate):
        log.info("axis simulator drops a connection (fault injection)", operation=name)
        if request.transport is not None:
            request.transport.close()
        raise _Dropped
    if _chance(sim.rng, faults.fail_rate):
        raise AxisFail(faults.fail_code, "injected fault", faults.fail_status)


def _chance(rng: random.Random, rate: float) -> bool:
    return rate >= 1.0 or (rate > 0.0 and rng.random() < rate)


async def _answer(request: web.Request, sim: Simulator, name: str) -> web.StreamResponse:
    operation = OPERATIONS.get(name)
    if operation is None:
        raise AxisFail(
            "UnknownOperation", f"no operation {name}; offered: {', '.join(OPERATIONS)}", 404
        )
    await _inject(request, sim, name, "before")
    try:
        caller = sim.authenticate(request.headers)
    except AxisFail as exc:
        sim.refused += 1
        log.info("axis simulator refused a request", operation=name, reason=str(exc))
        raise
    answer = await operation(request, sim, caller)
    await _inject(request, sim, name, "after")
    return answer if isinstance(answer, web.StreamResponse) else web.json_response(answer)


async def handle_operation(request: web.Request) -> web.StreamResponse:
    """Any `/<operation>`: every failure is answered in the axis's FAIL form."""
    sim = request.app[SIMULATOR]
    name = request.match_info["operation"]
    sim.requests[name if name in OPERATIONS else "(unknown)"] += 1
    try:
        return await _answer(request, sim, name)
    except AxisFail as exc:
        return web.json_response(fail_body(exc.code, str(exc)), status=exc.http_status)
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


def build_simulator_app(config: SimulatorConfig) -> web.Application:
    """The simulator as an aiohttp application; its store closes with the app."""
    sim = Simulator.build(config)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[SIMULATOR] = sim

    async def close_store(_: web.Application) -> None:
        sim.store.close()

    app.on_cleanup.append(close_store)
    app.router.add_get("/_sim/healthz", healthz)
    app.router.add_get("/_sim/state", get_state)
    app.router.add_get("/_sim/faults", get_faults)
    app.router.add_post("/_sim/faults", set_faults)
    app.router.add_delete("/_sim/faults", clear_faults)
    app.router.add_route("GET", "/{operation}", handle_operation)
    app.router.add_route("POST", "/{operation}", handle_operation)
    return app


# -- running it ------------------------------------------------------------------------


async def serve_simulator(
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8090,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve until cancelled or SIGTERM/SIGINT; port 0 picks a free port, which
    `ready` receives once the simulator accepts connections."""
    runner = web.AppRunner(build_simulator_app(config), handle_signals=False, access_log=None)
    stop = asyncio.Event()
    signals = _on_signals(stop)
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        actual = runner.addresses[0][1] if runner.addresses else port
        url = f"http://{host}:{actual}"
        log.info(
            f"axis simulator listening on {url}",
            url=url,
            systems=[s.id for s in config.systems],
            state_file=str(config.state_file) if config.state_file else None,
        )
        if ready is not None:
            ready(actual)
        await stop.wait()
        log.info("axis simulator stopping")
    finally:
        await runner.cleanup()
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.remove_signal_handler(sig)
    log.info("axis simulator stopped")


def _on_signals(stop: asyncio.Event) -> list[signal.Signals]:
    """Stop on SIGTERM/SIGINT where the loop can handle signals (the main thread)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(sig)
    return installed


def main(argv: list[str] | None = None) -> int:
    """`python -m adapters.national_axis.simulator --config FILE [--host H] [--port N]`."""
    parser = argparse.ArgumentParser(
        prog="python -m adapters.national_axis.simulator",
        description="A simulator of the national document axis (VDXP), for tests and demos.",
    )
    parser.add_argument("--config", required=True, help="the simulator's TOML file")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (keep it local)")
    parser.add_argument("--port", type=int, default=8090, help="listen port; 0 = any free one")
    args = parser.parse_args(argv)
    try:
        config = load_simulator_config(args.config)
    except SimulatorConfigError as exc:
        print(f"axis simulator: {exc}", file=sys.stderr)
        return 2
    configure_logging(LoggingSettings())
    asyncio.run(serve_simulator(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
