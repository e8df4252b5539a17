"""VNPT's unchanged SDK jars (SDKVXP 2.0.1, EdXML102) in a JVM, for the interop tests.

The jars live in ../shared/interop/vnpt-sdk/lib (DOCBROKER_VNPT_SDK_LIB overrides
it); they are never copied into this repository. `SdkHarness.java` beside this file
is compiled with `javac` once per test session and driven one JSON command per line:
a `JavaSdk` is one long-running agency system (one pair of SDK service objects, so
its timestamp and left-over parameters behave as in production).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SOURCE = HERE / "SdkHarness.java"
DEFAULT_LIB = ROOT.parent / "shared" / "interop" / "vnpt-sdk" / "lib"


def sdk_lib() -> Path:
    return Path(os.environ.get("DOCBROKER_VNPT_SDK_LIB", DEFAULT_LIB))


def unavailable_reason() -> str | None:
    """Why the real SDK cannot run here (shown as the skip reason), or None."""
    lib = sdk_lib()
    if not (lib / "SDKVXP-2.0.1.jar").is_file() or not (lib / "EdXML102-0.0.3.jar").is_file():
        return f"VNPT's SDK jars are not at {lib} (../shared/interop/vnpt-sdk/lib)"
    for tool in ("javac", "java"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (Java 17 runs the SDK)"
    return None


def classpath(build: Path) -> str:
    return f"{sdk_lib()}/*{os.pathsep}{build}"


def compile_harness(build_root: Path) -> Path:
    """Compile SdkHarness.java (once per source version) into build_root."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    build = build_root / digest
    if not (build / "SdkHarness.class").is_file():
        build.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [
                "javac",
                "-nowarn",
                "-encoding",
                "UTF-8",
                "-cp",
                f"{sdk_lib()}/*",
                "-d",
                str(build),
                str(SOURCE),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"javac SdkHarness.java failed:\n{proc.stdout}\n{proc.stderr}")
    return build


class JavaSdk:
    """One agency system running the real SDK: `call(op, ...)` returns the SDK's own
    result object as JSON (None where the SDK returned null)."""

    def __init__(self, build: Path, log_file: Path) -> None:
        self._log = log_file.open("ab")
        self._proc = subprocess.Popen(
            [
                "java",
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-Dfile.encoding=UTF-8",
                "-cp",
                classpath(build),
                "SdkHarness",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self._lock = threading.Lock()
        self.log_file = log_file

    def call(self, op: str, **fields: Any) -> Any:
        """Run one command; raises if the harness itself failed (not the SDK call)."""
        line = json.dumps({"op": op, **fields}) + "\n"
        with self._lock:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(line.encode())
            self._proc.stdin.flush()
            answer = self._proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"the SDK harness ended; see {self.log_file}")
        data = json.loads(answer)
        if "harness_error" in data:
            raise RuntimeError(f"SDK harness: {data['harness_error']} (log: {self.log_file})")
        return data["result"]

    def connect(self, endpoint: str, system_id: str, secret: str, store: Path) -> None:
        """New SDK service objects (a new timestamp, an empty parameter map)."""
        store.mkdir(parents=True, exist_ok=True)
        self.call("connect", endpoint=endpoint, systemid=system_id, secret=secret, store=str(store))

    def params(self, op: str, params: dict[str, Any], **fields: Any) -> Any:
        """An SDK call whose JSON parameter string is `params`."""
        return self.call(op, params=json.dumps(params), **fields)

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()

    def __enter__(self) -> JavaSdk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
