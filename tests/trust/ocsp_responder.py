"""A real OCSP responder for the tests: `openssl ocsp` serving an index of good and
revoked certificates (any other serial is unknown to it), signed by a delegated
responder certificate; and a responder that accepts connections and never answers."""

from __future__ import annotations

import contextlib
import select
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from broker.keys.devpki import Authority, cert_pem, issue, key_pem
from broker.trust.certs import subject_text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%y%m%d%H%M%SZ")


def index_line(cert: x509.Certificate, revoked_at: datetime | None = None) -> str:
    """A line of openssl's CA database (index.txt): V(alid) or R(evoked)."""
    serial = f"{cert.serial_number:X}"
    serial = serial if len(serial) % 2 == 0 else "0" + serial
    subject = "/" + "/".join(reversed(subject_text(cert).split(",")))
    state, when = ("R", _when(revoked_at)) if revoked_at else ("V", "")
    return "\t".join([state, _when(cert.not_valid_after_utc), when, serial, "unknown", subject])


@dataclass
class Responder:
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def openssl_responder(
    folder: Path,
    ca: Authority,
    good: list[x509.Certificate],
    revoked: list[x509.Certificate],
    *,
    signer: Authority | None = None,
    port: int | None = None,
) -> Iterator[Responder]:
    """`openssl ocsp` on 127.0.0.1, answers current for 5 minutes (nextUpdate); signed
    by `signer` (the CA itself) or a delegated responder certificate from `ca`."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    lines = [index_line(c) for c in good] + [index_line(c, now) for c in revoked]
    (folder / "index.txt").write_text("".join(f"{line}\n" for line in lines))
    (folder / "ca.pem").write_bytes(cert_pem(ca.certificate))
    if signer is None:
        delegate = issue(ca, "OCSP responder", ocsp_signing=True)
        signing_cert, signing_key = delegate.certificate, delegate.key
    else:
        signing_cert, signing_key = signer.certificate, signer.key
    (folder / "rsigner.pem").write_bytes(cert_pem(signing_cert))
    (folder / "rkey.pem").write_bytes(key_pem(signing_key))
    port = port or free_port()
    files = {name: str(folder / f"{name}.pem") for name in ("rsigner", "rkey", "ca")}
    args = ["-index", str(folder / "index.txt"), "-rsigner", files["rsigner"]]
    args += ["-rkey", files["rkey"], "-CA", files["ca"], "-nmin", "5", "-ignore_err"]
    with (folder / "openssl.log").open("wb") as errors:
        # OpenSSL 3.0 takes a port only (it listens on every address); it says ACCEPT
        process = subprocess.Popen(
            ["openssl", "ocsp", "-port", str(port), *args], stdout=subprocess.PIPE, stderr=errors
        )
    try:
        _wait_listening(process, folder / "openssl.log")
        yield Responder(f"http://127.0.0.1:{port}/", process)
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def _wait_listening(process: subprocess.Popen[bytes], log: Path) -> None:
    """Until the responder says it listens (a probe connection would hold it: it serves
    one connection at a time)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 10)
    line = process.stdout.readline() if ready else b""
    if not line.startswith(b"ACCEPT"):
        process.kill()
        raise RuntimeError(f"openssl ocsp did not start: {log.read_text()}")


@contextlib.contextmanager
def silent_responder() -> Iterator[str]:
    """A listening socket that never accepts nor answers: connections complete in its
    backlog, and a request waits for an answer that never comes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/"
