"""The simulator's configuration: its systems, each with a secret and the agencies it
serves (a docbroker directory file), where it keeps state, its random seed."""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from broker.directory.io import check_unique, parse_file
from broker.directory.model import Agency


class SimulatorConfigError(ValueError):
    """A configuration the simulator cannot run with; the message names file and key."""


@dataclass(frozen=True, slots=True)
class SystemConfig:
    """One system of the axis: who may call as `id`, and the agencies it serves.

    `organ_id` is the code of the system's own broker, if it has one (docbroker's
    `organ_id`): the statuses a broker makes itself carry it as their sender, so
    the system may send as it, and packages to it reach the system."""

    id: str
    secret: str
    agencies: tuple[Agency, ...] = ()  # the whole directory file; served = the local ones
    directory: Path | None = None  # where the agencies came from (for messages only)
    organ_id: str = ""

    @property
    def served(self) -> tuple[Agency, ...]:
        """The agencies whose documents this system receives."""
        return tuple(a for a in self.agencies if a.local)

    def codes(self) -> list[str]:
        """Every code (either form) this system receives for, from its configuration."""
        out = [code for agency in self.served for code in agency.codes()]
        return [*out, self.organ_id] if self.organ_id else out


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """The whole simulator: its systems, where it keeps state, its random seed."""

    systems: tuple[SystemConfig, ...]
    state_file: Path | None = None  # None: in memory, lost when the process ends
    seed: int | None = None  # seeds fault injection, so tests can be deterministic


_TOP_KEYS = {"state_file", "seed", "system"}
_SYSTEM_KEYS = {"id", "secret", "directory"}
_OPTIONAL_SYSTEM_KEYS = {"organ_id"}


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
    unknown = sorted(set(row) - _SYSTEM_KEYS - _OPTIONAL_SYSTEM_KEYS)
    if unknown:
        raise SimulatorConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in sorted(_SYSTEM_KEYS):
        if not isinstance(row.get(key), str) or not row[key]:
            raise SimulatorConfigError(f"{where}.{key} is required (a non-empty string)")
    organ_id = row.get("organ_id", "")
    if not isinstance(organ_id, str):
        raise SimulatorConfigError(f"{where}.organ_id must be a string")
    directory = (base / row["directory"]).resolve()
    agencies = load_directory(directory, where)
    return SystemConfig(row["id"], row["secret"], agencies, directory, organ_id.strip())


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
        for code in system.codes():
            other = owner.setdefault(code, system.id)
            if other != system.id:
                problems.append(f"agency {code} is served by both {other} and {system.id}")
    return problems
