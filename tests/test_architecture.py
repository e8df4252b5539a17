"""The shape DESIGN.md asks for, checked: a pure core, adapters at the edges,
aiokafka in one module, every package installed."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The functional core: plain functions over bytes and values, no I/O.
PURE = [
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "broker" / "core").glob("*.py")),
    "broker/pipeline/processing.py",
    "broker/directory/model.py",
    "broker/directory/book.py",
    "broker/directory/io.py",
    "broker/trust/policy.py",
    "broker/trust/sender.py",
    "broker/trust/store.py",
    "broker/trust/xmldsig.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "broker" / "edxml").glob("*.py")),
]
IO_MODULES = {
    "asyncio",
    "sqlite3",
    "aiohttp",
    "aiokafka",
    "socket",
    "urllib",
    "subprocess",
    "adapters",
}
# The shell's composition roots may mount adapters; nothing else in broker/ may.
COMPOSITION_ROOTS = {"broker/daemon.py", "broker/cli/base.py"}


IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", re.MULTILINE)


def imports_of(path: Path) -> set[str]:
    """Top-level names of absolute imports (a regex, not ast.parse: CPython 3.11.7's
    parser raises a spurious SystemError late in a long session, gh-106905)."""
    found = IMPORT.findall(path.read_text(encoding="utf-8"))
    return {(a or b).split(".")[0] for a, b in found if not (a or b).startswith(".")}


@pytest.mark.parametrize("module", PURE)
def test_core_modules_do_no_io(module: str) -> None:
    """Parsing, validation, routing and record building import no I/O library."""
    assert not imports_of(ROOT / module) & IO_MODULES, module


def test_only_composition_roots_import_adapters() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "broker").rglob("*.py")
        if "adapters" in imports_of(p) and str(p.relative_to(ROOT)) not in COMPOSITION_ROOTS
    ]
    assert offenders == []


def test_aiokafka_lives_in_one_module() -> None:
    """Only the Kafka backend talks to the Kafka client (STYLE 2)."""
    users = sorted(
        str(p.relative_to(ROOT))
        for d in ("broker", "adapters")
        for p in (ROOT / d).rglob("*.py")
        if "aiokafka" in imports_of(p)
    )
    assert users == ["broker/log/kafka.py"]


def test_every_package_is_installed() -> None:
    """setup.cfg lists packages explicitly (schemas/ is mapped to broker.schemas)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for d in ("broker", "adapters")
        for p in (ROOT / d).rglob("__init__.py")
    } | {"broker.schemas"}
    assert listed == found
