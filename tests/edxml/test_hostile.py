"""A hostile corpus: each input is refused with the right code, in bounded memory.

Each case runs in its own process so that its peak memory is its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.edxml_samples import NS, document

MEASURE = Path(__file__).with_name("measure_validation.py")
MiB = 1024 * 1024


def laughs() -> bytes:
    ents = b"".join(
        b'<!ENTITY l%d "%s">' % (i, (b"&l%d;" % (i - 1)) * 10 if i else b"lol") for i in range(10)
    )
    return b'<?xml version="1.0"?><!DOCTYPE edXML [' + ents + b"]><edXML>&l9;</edXML>"


def many_recipients() -> bytes:
    return document(recipients=tuple(f"000.00.{i // 100:02d}.H{i % 100:02d}" for i in range(1500)))


CASES: dict[str, tuple[bytes | None, str]] = {
    "doctype": (b'<!DOCTYPE edXML><edXML xmlns="' + NS.encode() + b'"/>', "dtd-forbidden"),
    "entity-expansion": (laughs(), "dtd-forbidden"),
    "external-entity": (
        b'<?xml version="1.0"?>\n<!DOCTYPE e [<!ENTITY x SYSTEM '
        b'"file:///etc/passwd">]><edXML>&x;</edXML>',
        "dtd-forbidden",
    ),
    "external-dtd": (
        b'<!-- hi --><!DOCTYPE e SYSTEM "http://127.0.0.1:9/e.dtd"><e/>',
        "dtd-forbidden",
    ),
    "undeclared-entity": (b'<edXML xmlns="' + NS.encode() + b'">&x;</edXML>', "not-well-formed"),
    "deep-nesting": (b"<a>" * 100_000 + b"</a>" * 100_000, "too-deep"),
    "deep-but-parseable": (b"<a>" * 500 + b"</a>" * 500, "too-deep"),
    "oversized": (None, "too-large"),  # 33 MiB, written by the test
    "many-elements": (None, "too-many-elements"),  # ~30 MiB of tiny elements
    "very-many-recipients": (many_recipients(), "too-many-recipients"),
    "wrong-namespace": (document().replace(NS.encode(), b"urn:not-edxml"), "wrong-namespace"),
    "truncated": (document()[:400], "not-well-formed"),
    "binary-garbage": (os.urandom(4096).replace(b"<", b"x"), "not-well-formed"),
    "empty": (b"", "empty-input"),
    "blank": (b"  \r\n\t ", "empty-input"),
}


def materialise(name: str, data: bytes | None, path: Path) -> None:
    if name == "oversized":
        path.write_bytes(document(padding=33 * MiB))
    elif name == "many-elements":
        body = b"<edXML:Bad/>" * (30 * MiB // 12)
        path.write_bytes(document().replace(b"<edXML:Subject>", body + b"<edXML:Subject>"))
    else:
        assert data is not None
        path.write_bytes(data)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_is_refused_in_bounded_memory(name: str, tmp_path: Path) -> None:
    data, expected = CASES[name]
    path = tmp_path / f"{name}.edxml"
    materialise(name, data, path)
    proc = subprocess.run(
        [sys.executable, str(MEASURE), str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert expected in result["codes"], result
    grown_mib = (result["peak_kib"] - result["baseline_kib"]) / 1024
    size_mib = path.stat().st_size / MiB
    # Memory follows the input size (a small multiple of it), never an expansion.
    assert grown_mib <= 16 + 12 * size_mib, (name, grown_mib, size_mib)
    if size_mib < 1:
        assert grown_mib < 32, (name, grown_mib)
