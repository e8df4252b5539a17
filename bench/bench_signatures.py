#!/usr/bin/env python3
"""Sign and verify costs per envelope (10 KB and 370 KB), beside raw cryptography.

In the same run it measures the floors: RSA-2048 (and ECDSA P-256) signing and
verifying one SHA-256 digest with cryptography, SHA-256 over the package's bytes,
and, for a sender's signature, one exclusive C14N of the signed document (and its
SHA-256) plus one bare RSA verification; then docbroker's stamp-and-sign, the
verification of the broker's signature (verify_all), and the verification of the
sender's signature as the pipeline does it (broker.trust.sender.check_sender with the
policy InboundProcessor._signature builds: the sender's mode, its pins, binding by
subject UID), each with the ratio to its floor. Also the cost of loading a PEM key,
which is why keys are loaded once. The machine may be shared: figures are medians,
and still noisy.

    .venv/bin/python bench/bench_signatures.py [--quick]

The last line of output is a JSON summary (the sender verifications' outcomes and
figures), which tests/e2e/test_bench_signatures.py reads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
from lxml import etree  # noqa: E402

from bench.bench_validate import package  # noqa: E402
from broker.clock import utc_now  # noqa: E402
from broker.edxml.validator import EnvelopeValidator  # noqa: E402
from broker.keys.devpki import empty_crl, issue, key_pem, make_ca  # noqa: E402
from broker.trust.certs import KeyMaterial  # noqa: E402
from broker.trust.policy import PolicyBook, SenderPolicy  # noqa: E402
from broker.trust.sender import SenderCheck, check_sender  # noqa: E402
from broker.trust.store import TrustStore  # noqa: E402
from broker.trust.xmldsig import BrokerSigner, SignatureVerifier  # noqa: E402
from tests.trust.signing import sign_as_sender  # noqa: E402

STAMP = datetime(2026, 12, 1, 9, 0, 0)  # the hop's TraceHeader time (edXML form)
SENDER = "000.00.00.H35"  # the sender of bench_validate.package
DSIG = "{http://www.w3.org/2000/09/xmldsig#}Signature"


def timed(fn: Callable[[], object], budget: float) -> float:
    fn()
    rounds = []
    start = time.perf_counter()
    while time.perf_counter() - start < budget or len(rounds) < 5:
        t = time.perf_counter()
        fn()
        rounds.append(time.perf_counter() - t)
    return statistics.median(rounds)


def pipeline_book(sender: str, codes: tuple[str, ...]) -> PolicyBook:
    """The policy book InboundProcessor._signature builds for one sender: the sender's
    policy (here: required, no SHA-1, no pinned certificate) under the default, its
    certificate bound by subject UID to any of its codes."""
    default = SenderPolicy("required", allow_sha1=False)
    policy = SenderPolicy(mode="required", allow_sha1=False, certificates=frozenset())
    return PolicyBook(default, {sender: policy}, True, aliases={sender: codes})


def signed_part_c14n(data: bytes) -> Callable[[], bytes]:
    """The floor's canonicalisation: the SHA-256 of one exclusive C14N of the document
    the enveloped signature covers (the document less its Signature), parsed once."""
    root = etree.fromstring(data, etree.XMLParser(huge_tree=True))
    for sig in root.iter(DSIG):
        sig.getparent().remove(sig)
    return lambda: hashlib.sha256(etree.tostring(root, method="c14n", exclusive=True)).digest()


def sender_case(data: bytes, sender_key: KeyMaterial, verifier: SignatureVerifier, budget: float):
    """(check, seconds per check_sender, seconds of its floor) for `data` signed by its
    sender."""
    signed = sign_as_sender(data, sender_key)
    env = EnvelopeValidator(clock=utc_now).check(signed)  # the pipeline checks first
    book = pipeline_book(env.sender_id, (env.sender_id,))
    check = check_sender(signed, env, verifier, book, at=utc_now())
    seconds = timed(lambda: check_sender(signed, env, verifier, book, at=utc_now()), budget)
    digest = hashlib.sha256(b"x").digest()
    prehashed = utils.Prehashed(hashes.SHA256())
    sig = sender_key.key.sign(digest, padding.PKCS1v15(), prehashed)
    public = sender_key.certificate.public_key()
    c14n = timed(signed_part_c14n(signed), budget / 2)
    rsa = timed(lambda: public.verify(sig, digest, padding.PKCS1v15(), prehashed), budget / 2)
    return check, seconds, c14n + rsa


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    budget = 0.4 if ap.parse_args().quick else 1.5
    ca = make_ca("bench CA")
    rsa_m = issue(ca, "broker rsa", uid="000.00.00.H35")
    ec_m = issue(ca, "broker ec", uid="000.00.00.H35", key_kind="ec")
    sender_m = issue(ca, "sender rsa", uid=SENDER)
    store = TrustStore([ca.certificate], crls=[empty_crl(ca)])
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
    cases = {"10 KB": package(6 * 1024), "370 KB": package(270 * 1024)}
    print("the broker's signature: stamp and sign, and its verification (verify_all)")
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
    print("the sender's signature (RSA-2048, SHA-256), verified as the pipeline does it")
    print(f"{'case':>7} {'outcome':>8} {'check_sender ms':>16} {'floor ms':>9} {'ratio':>6}")
    summary: dict[str, object] = {"quick": budget < 1, "cases": {}}
    for name, data in cases.items():
        check, seconds, floor = sender_case(data, sender_m, verifier, budget)
        print(
            f"{name:>7} {check.outcome:>8} {seconds * 1000:>16.3f} {floor * 1000:>9.3f} "
            f"{seconds / floor:>6.1f}"
        )
        summary["cases"][name] = sender_summary(check, seconds, floor)  # type: ignore[index]
    print(
        "floor = one exclusive C14N of the signed document + its SHA-256 + one RSA "
        "verification; check_sender adds parsing (twice: the whole package, then the "
        "copy it verifies), the reference digest, the certificate chain and the policy."
    )
    print(json.dumps(summary))


def sender_summary(check: SenderCheck, seconds: float, floor: float) -> dict[str, object]:
    return {
        "outcome": check.outcome,
        "problems": [p.code for p in check.problems],
        "signed_part": check.signed_data is not None,
        "check_sender_ms": round(seconds * 1000, 3),
        "floor_ms": round(floor * 1000, 3),
        "ratio": round(seconds / floor, 2),
    }


if __name__ == "__main__":
    main()
