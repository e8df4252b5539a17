#!/usr/bin/env python3
"""Sign and verify costs per envelope (10 KB and 370 KB), beside raw cryptography.

In the same run it measures the floor: RSA-2048 (and ECDSA P-256) signing and
verifying one SHA-256 digest with cryptography, and SHA-256 over the package's
bytes; then docbroker's stamp-and-sign, sign, and verification of the broker's
and of a sender's signature, with the ratio to that floor. Also the cost of
loading a PEM key, which is why keys are loaded once.

    .venv/bin/python bench/bench_signatures.py [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils  # noqa: E402

from bench.bench_validate import SAMPLE, package  # noqa: E402
from broker.clock import utc_now  # noqa: E402
from broker.keys.devpki import issue, key_pem, make_ca  # noqa: E402
from broker.trust.store import TrustStore  # noqa: E402
from broker.trust.xmldsig import BrokerSigner, SignatureVerifier  # noqa: E402

STAMP = datetime(2026, 12, 1, 9, 0, 0)  # the hop's TraceHeader time (edXML form)


def timed(fn: Callable[[], object], budget: float) -> float:
    fn()
    rounds = []
    start = time.perf_counter()
    while time.perf_counter() - start < budget or len(rounds) < 5:
        t = time.perf_counter()
        fn()
        rounds.append(time.perf_counter() - t)
    return statistics.median(rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    budget = 0.4 if ap.parse_args().quick else 1.5
    ca = make_ca("bench CA")
    rsa_m = issue(ca, "broker rsa", uid="000.00.00.H35")
    ec_m = issue(ca, "broker ec", uid="000.00.00.H35", key_kind="ec")
    store = TrustStore([ca.certificate])
    verifier = SignatureVerifier(store)
    digest = hashlib.sha256(b"x").digest()
    prehashed = utils.Prehashed(hashes.SHA256())
    rsa_sig = rsa_m.key.sign(digest, padding.PKCS1v15(), prehashed)
    ec_sig = ec_m.key.sign(digest, ec.ECDSA(prehashed))
    floors = {
        "rsa-2048 sign": timed(
            lambda: rsa_m.key.sign(digest, padding.PKCS1v15(), prehashed), budget
        ),
        "rsa-2048 verify": timed(
            lambda: rsa_m.certificate.public_key().verify(
                rsa_sig, digest, padding.PKCS1v15(), prehashed
            ),
            budget,
        ),
        "ecdsa-p256 sign": timed(lambda: ec_m.key.sign(digest, ec.ECDSA(prehashed)), budget),
        "ecdsa-p256 verify": timed(
            lambda: ec_m.certificate.public_key().verify(ec_sig, digest, ec.ECDSA(prehashed)),
            budget,
        ),
        "load RSA PEM key": timed(
            lambda: serialization.load_pem_private_key(key_pem(rsa_m.key), None), budget
        ),
    }
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print("raw cryptography (floor), ms per operation:")
    for name, sec in floors.items():
        print(f"  {name:<20} {sec * 1000:8.3f}")
    cases = {
        "10 KB": package(6 * 1024),
        "370 KB": SAMPLE.read_bytes() if SAMPLE.exists() else package(270 * 1024),
    }
    print(
        f"{'case':>7} {'key':>6} {'sha256 ms':>10} {'floor ms':>9} "
        f"{'stamp+sign ms':>14} {'ratio':>6} {'verify ms':>10} {'floor ms':>9} {'ratio':>6}"
    )
    for name, data in cases.items():
        sha = timed(lambda d=data: hashlib.sha256(d).digest(), budget / 3)
        for kind, material in (("rsa", rsa_m), ("ecdsa", ec_m)):
            signer = BrokerSigner(material)
            signed = signer.stamp_and_sign(data, "000.00.00.H35", STAMP)
            assert verifier.verify_all(signed, at=utc_now())[-1].valid
            sign_floor = floors[f"{'rsa-2048' if kind == 'rsa' else 'ecdsa-p256'} sign"] + sha
            verify_floor = floors[f"{'rsa-2048' if kind == 'rsa' else 'ecdsa-p256'} verify"] + sha
            s = timed(
                lambda d=data, sg=signer: sg.stamp_and_sign(d, "000.00.00.H35", STAMP), budget
            )
            v = timed(lambda d=signed: verifier.verify_all(d, at=utc_now()), budget)
            print(
                f"{name:>7} {kind:>6} {sha * 1000:>10.3f} {sign_floor * 1000:>9.3f} "
                f"{s * 1000:>14.3f} {s / sign_floor:>6.1f} {v * 1000:>10.3f} "
                f"{verify_floor * 1000:>9.3f} {v / verify_floor:>6.1f}"
            )
    print(
        "floor = one raw signature (or verification) + SHA-256 of the package; "
        "docbroker adds parsing, canonicalisation, the TraceHeader and certificate checks."
    )


if __name__ == "__main__":
    main()
