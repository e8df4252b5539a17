"""One running simulator: its configuration, store, counters and faults, and who serves
which agency (the configured ones and those systems registered since)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from adapters.national_axis.simulator.config import (
    SimulatorConfig,
    SimulatorConfigError,
    SystemConfig,
    config_problems,
)
from adapters.national_axis.simulator.faults import Faults
from adapters.national_axis.simulator.store import Registered, Store
from broker.vdxp import ListedAgency, vn_timestamp

VIETNAM = timezone(timedelta(hours=7))


def vn_time(ms: int) -> str:
    """The axis's timestamp form (edXML's: yyyy/MM/dd HH:mm:ss, Vietnam time); "" for 0."""
    return vn_timestamp(datetime.fromtimestamp(ms / 1000, VIETNAM)) if ms else ""


@dataclass(frozen=True, slots=True)
class Route:
    """Where a code leads: the system that receives for it, and the agency's key."""

    system: SystemConfig
    key: str  # the agency's QĐ 20 code (the organ_id for a system's own broker)


@dataclass
class Simulator:
    config: SimulatorConfig
    store: Store
    rng: random.Random
    faults: Faults = field(default_factory=Faults)
    requests: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    systems: dict[str, SystemConfig] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)  # configured codes, either form

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
                    sim.routes[code] = Route(system, agency.code)
            if system.organ_id:
                sim.routes[system.organ_id] = Route(system, system.organ_id)
        return sim

    def route(self, code: str) -> Route | None:
        """The system that receives for `code` (either form), or None."""
        found = self.routes.get(code)
        if found is not None:
            return found
        registered = self.store.find_registered(code)
        if registered is None or registered.deleted:
            return None
        system = self.systems.get(registered.system)
        return Route(system, registered.code) if system is not None else None

    def listed(self) -> list[tuple[ListedAgency, str]]:
        """Every agency the directory operations list (deleted registrations too), each
        with the id of the system that serves it."""
        out = [
            (ListedAgency(a.code, a.code102, a.name, pid=a.parent, mail=a.email), system.id)
            for system in self.config.systems
            for a in system.served
        ]
        return out + [(_listed(r), r.system) for r in self.store.registered()]

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


def _listed(r: Registered) -> ListedAgency:
    return ListedAgency(
        r.code, r.code102, r.name, r.pid, r.mail, r.version, vn_time(r.modified_ms), r.deleted
    )
