"""The shape the README's Architecture section describes, checked.

The import contracts (layers that point down, no cycles, a pure core that imports no
I/O library, adapters independent of each other) are import-linter's, declared in
setup.cfg; here they are run, shown to catch what they are for on a copy of the
tree, and completed by what imports cannot show: the pure core reads no clock, file
or network, aiokafka lives in one module, every package is installed, modules and
functions stay small.
"""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# The functional core: plain functions over bytes and values.
PURE_PACKAGES = ("broker/core", "broker/edxml", "broker/trust", "broker/directory", "broker/vdxp")
PURE_MODULES = (
    "broker/pipeline/processing.py",
    "broker/pipeline/intake.py",
    "broker/views/document_fold.py",
    "adapters/http_api/admission.py",
)
PACKAGE_DATA = "broker/edxml/schema.py"  # reads the XSD shipped with the code, once
# Declarative modules (settings and metric tables) may be longer than the rest.
DECLARATIVE = {"broker/config.py", "broker/metrics.py"}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

# Run in a fresh interpreter: CPython 3.11.7's parser can raise a spurious SystemError
# late in a long session (gh-106905).
SCAN = textwrap.dedent(
    """
    import ast, json, sys
    from pathlib import Path

    CLOCK = {("time", "time"), ("time", "time_ns"), ("time", "monotonic"),
             ("time", "perf_counter"), ("datetime", "now"), ("datetime", "utcnow"),
             ("datetime", "today"), ("date", "today"), ("os", "environ"), ("os", "getenv")}
    FILES = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "unlink",
             "mkdir", "iterdir", "glob", "rglob", "exists", "stat"}
    NETWORK = {"socket", "urllib", "http", "aiohttp", "aiokafka", "ssl", "sqlite3",
               "subprocess", "asyncio", "requests"}

    found = {}
    for name in sys.argv[1:]:
        tree = ast.parse(Path(name).read_text(encoding="utf-8"))
        bad = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                else:
                    mods = [node.module or ""]
                bad += [f"imports {m}" for m in mods if m.split(".")[0] in NETWORK | {"pathlib"}]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if (node.value.id, node.attr) in CLOCK:
                    bad.append(f"reads {node.value.id}.{node.attr} (line {node.lineno})")
            if isinstance(node, ast.Call):
                f = node.func
                called = getattr(f, "id", None) or getattr(f, "attr", "")
                if called in FILES:
                    bad.append(f"calls {called}() (line {node.lineno})")
        if bad:
            found[name] = bad
    print(json.dumps(found))
    """
)

SHAPE = textwrap.dedent(
    """
    import ast, json, sys
    from pathlib import Path

    out = {"modules": {}, "functions": {}}
    for name in sys.argv[1:]:
        text = Path(name).read_text(encoding="utf-8")
        out["modules"][name] = text.count("\\n")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out["functions"][f"{name}:{node.name}"] = node.end_lineno - node.lineno + 1
    print(json.dumps(out))
    """
)


def python_files(*roots: str) -> list[str]:
    out: list[str] = []
    for root in roots:
        path = ROOT / root
        files = [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))
        out += [str(p.relative_to(ROOT)) for p in files]
    return out


def run_script(script: str, files: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", script, *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout)


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_import_contracts_hold() -> None:
    """Layers point down, no cycles, the pure core imports no I/O library, the two
    adapters are independent (setup.cfg, [importlinter])."""
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 4 kept, 0 broken." in proc.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("broker/edxml/model.py", "import broker.cli.base", "Layers point down"),
        ("broker/pipeline/processing.py", "import broker.pipeline.runner", "No import cycles"),
        ("broker/directory/model.py", "import sqlite3", "The pure core does no I/O"),
        ("adapters/http_api/ops.py", "import adapters.national_axis.link", "know nothing"),
    ],
)
def test_the_contracts_catch_what_they_are_for(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    """On a copy of the tree, one upward import, one cycle, one I/O import, one
    adapter reaching into the other: each breaks its contract."""
    for part in ("broker", "adapters"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # noqa\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0, proc.stdout
    assert f"{broken}" in proc.stdout.split("Broken contracts")[-1], proc.stdout


def test_every_broker_package_has_a_layer() -> None:
    """The layers contract names every package and module of broker/ (a new one must be
    placed, not slip in unchecked)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    layered = {
        name.strip()
        for line in cfg["importlinter:contract:layers"]["layers"].split("\n")
        for name in line.split("|")
        if name.strip()
    }
    found = {
        f"broker.{p.stem if p.is_file() else p.name}"
        for p in (ROOT / "broker").iterdir()
        if (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))
        or (p.is_dir() and (p / "__init__.py").exists())
    }
    assert found - layered == set()


def test_the_pure_core_reads_no_clock_file_or_network() -> None:
    """Time comes in as a value (broker.clock is the shell's), files are read by
    broker.keys and the CLI. The edXML schema is package data, read as code is."""
    files = [f for f in python_files(*PURE_PACKAGES, *PURE_MODULES) if f != PACKAGE_DATA]
    assert run_script(SCAN, files) == {}


def test_aiokafka_lives_in_one_module() -> None:
    """Only the Kafka backend talks to the Kafka client (STYLE 2)."""
    users = sorted(
        name
        for name in python_files("broker", "adapters")
        if "aiokafka" in (ROOT / name).read_text(encoding="utf-8")
        and ("import aiokafka" in (ROOT / name).read_text(encoding="utf-8")
             or "from aiokafka" in (ROOT / name).read_text(encoding="utf-8"))
    )  # fmt: skip
    assert all(u.startswith("broker/log/kafka") for u in users), users


def test_modules_and_functions_stay_small() -> None:
    shape = run_script(SHAPE, python_files("broker", "adapters"))
    long_modules = {
        m: n for m, n in shape["modules"].items() if n > MAX_MODULE_LINES and m not in DECLARATIVE
    }
    long_functions = {
        f: n
        for f, n in shape["functions"].items()
        if n > MAX_FUNCTION_LINES and f.split(":")[0] not in DECLARATIVE
    }
    assert long_modules == {} and long_functions == {}


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
