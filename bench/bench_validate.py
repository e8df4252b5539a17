#!/usr/bin/env python3
"""Parse + validate cost per envelope: 10 KB, 370 KB and 20 MB packages.

For each size it measures, in the same run:
- the floor: lxml parsing the bytes with the same parser settings, nothing else;
- docbroker's whole validation (size, hardened parse, XSD, reading, rules,
  base64 decoding of attachments), and the ratio to the floor;
- the schema step alone with lxml and with xmlschema (the measurement behind
  choosing lxml for the schema; xmlschema is not used on the hot path).

    .venv/bin/python bench/bench_validate.py [--quick]

The 370 KB case is ../shared/interop/vnpt-sdk-samples/edoc_update.edxml when it
is present (a real package), else a generated one of the same shape.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lxml import etree  # noqa: E402

from broker.clock import utc_now  # noqa: E402
from broker.edxml.builder import build_envelope  # noqa: E402
from broker.edxml.model import (  # noqa: E402
    Attachment,
    DocumentCode,
    Envelope,
    Kind,
    Organization,
    Promulgation,
)
from broker.edxml.parser import _parser  # noqa: E402
from broker.edxml.rules import Limits  # noqa: E402
from broker.edxml.validator import EnvelopeValidator, schema_document  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "interop" / "vnpt-sdk-samples" / "edoc_update.edxml"


def package(attachment_bytes: int, recipients: int = 3) -> bytes:
    env = Envelope(
        kind=Kind.DOCUMENT,
        sender=Organization("000.00.00.H35", "UBND tỉnh Lai Châu"),
        recipients=tuple(Organization(f"000.00.{i:02d}.H35", f"Sở {i}") for i in range(recipients)),
        document_id="000.00.00.H35,2026/11/20,12/UBND-VP",
        code=DocumentCode("12", "UBND-VP"),
        promulgation=Promulgation("Lai Châu", date(2026, 11, 20)),
        subject="V/v triển khai trục liên thông văn bản",
        attachments=(Attachment("cid:1", "vb.pdf", "", "application/pdf", attachment_bytes),),
    )
    return build_envelope(env, {"cid:1": os.urandom(attachment_bytes)})


def timed(fn: Callable[[], object], min_seconds: float) -> tuple[float, int]:
    """Median seconds per call over repeated rounds, and the number of calls."""
    fn()  # warm up
    rounds: list[float] = []
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(rounds) < 5:
        t = time.perf_counter()
        fn()
        rounds.append(time.perf_counter() - t)
        calls += 1
    return statistics.median(rounds), calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter rounds (noisier)")
    args = ap.parse_args()
    budget = 0.5 if args.quick else 2.0
    cases = {
        "10 KB": package(6 * 1024),
        "370 KB": SAMPLE.read_bytes() if SAMPLE.exists() else package(270 * 1024),
        "20 MB": package(15 * 1024 * 1024),
    }
    validator = EnvelopeValidator(Limits(), clock=utc_now)
    schema = etree.XMLSchema(schema_document())
    try:
        import xmlschema

        xs = xmlschema.XMLSchema(str(ROOT / "schemas" / "edxml.xsd"))
    except ImportError:  # pragma: no cover
        xs = None
    print(
        f"python {sys.version.split()[0]}, lxml {etree.__version__}, libxml2 "
        f"{'.'.join(map(str, etree.LIBXML_VERSION))}, {os.cpu_count()} CPUs"
    )
    header = (
        f"{'case':>7} {'bytes':>10} {'floor ms':>9} {'validate ms':>12} {'ratio':>6} "
        f"{'MB/s':>7} {'xsd lxml ms':>12} {'xsd xmlschema ms':>17}"
    )
    print(header)
    for name, data in cases.items():
        verdict = validator.validate(data, today=date(2030, 1, 1))
        assert verdict.ok, verdict.problems
        floor, _ = timed(lambda d=data: etree.fromstring(d, _parser()), budget)
        full, _ = timed(lambda d=data: validator.validate(d, today=date(2030, 1, 1)), budget)
        tree = etree.fromstring(data, _parser()).getroottree()
        lx, _ = timed(lambda t=tree: schema.validate(t), budget / 2)
        xsm = "-"
        if xs is not None and len(data) < 1024 * 1024:
            x, _ = timed(lambda t=tree: xs.is_valid(t), budget / 2)
            xsm = f"{x * 1000:.3f}"
        print(
            f"{name:>7} {len(data):>10} {floor * 1000:>9.3f} {full * 1000:>12.3f} "
            f"{full / floor:>6.1f} {len(data) / full / 1e6:>7.1f} {lx * 1000:>12.4f} {xsm:>17}"
        )
    print(
        "floor = lxml parse only; ratio = validate / floor (lower is better); "
        "validate includes decoding every attachment's base64."
    )


if __name__ == "__main__":
    main()
