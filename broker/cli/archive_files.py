"""The archive folder on disk: reading its files, writing one durably, the signature
check that `archive verify` and `archive export` use.

A file is written as `NAME.zip.partial`, synced, read back and verified, renamed to
`NAME.zip`, and the folder synced: a kill -9 at any moment leaves either no
`NAME.zip` or a complete, verified one (a `.partial` left behind is deleted by the
next export, which writes the same bytes again).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from broker.clock import utc_now
from broker.config import Settings
from broker.core.archive import PREFIX, ArchiveManifest
from broker.core.archive_check import FileCheck, SignatureCheck, check_file
from broker.core.errors import InputRefused, TargetNotEmpty
from broker.core.problems import Problem
from broker.keys.pem import load_certificates, trust_store_from_files
from broker.trust.detached import verify_detached
from broker.trust.store import TrustStore

PARTIAL = ".partial"
LOCK = ".export.lock"


def step(name: str) -> None:
    """Called after each step of writing a file ("written", "renamed", "marked"): the
    crash tests kill the process here."""


def archive_files(directory: Path) -> list[Path]:
    """The archive files of the folder, by name."""
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.iterdir() if p.name.startswith(PREFIX) and p.suffix == ".zip"
    )


@contextlib.contextmanager
def export_lock(directory: Path) -> Iterator[None]:
    """Hold the folder's lock for one export; `TargetNotEmpty` when another holds it."""
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TargetNotEmpty(f"another archive export is writing into {directory}") from None
        yield
    finally:
        os.close(fd)


def drop_partials(directory: Path) -> list[str]:
    """Delete files a killed export left half-written; their names."""
    gone = []
    for path in sorted(directory.glob(f"*{PARTIAL}")):
        path.unlink()
        gone.append(path.name)
    return gone


def check_folder(directory: Path, signature_check: SignatureCheck) -> list[FileCheck]:
    return [check_file(p.name, p.read_bytes(), signature_check) for p in archive_files(directory)]


def sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(target: Path, data: bytes, verify: Callable[[bytes], Sequence[str]]) -> None:
    """Write `data` as `target`, complete and verified, or not at all (see above);
    `verify` names what is wrong with the bytes read back from disk."""
    part = target.with_name(target.name + PARTIAL)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    step("written")
    problems = verify(part.read_bytes())
    if problems:
        part.unlink()
        raise InputRefused(
            [
                Problem("archive-damaged", f"{target.name} did not verify once written: {p}")
                for p in problems
            ]
        )
    part.rename(target)
    sync_dir(target.parent)
    step("renamed")


def signature_check(
    settings: Settings, ca_files: Sequence[Path] = (), cert_file: Path | None = None
) -> tuple[SignatureCheck, str]:
    """The check of a manifest's signature, and what it trusts (for the report): the
    CAs given or configured (a certificate they issued, valid then, signs), else the
    broker certificate given or configured (that one only), else the certificate the
    archive carries (the file is intact, but who signed it is not checked)."""
    store: TrustStore | None = None
    pinned: x509.Certificate | None = None
    cas = [p for p in (ca_files or settings.trusted_ca_files) if p.exists()]
    if cas:
        store = trust_store_from_files(cas)
    cert_path = cert_file or settings.key_file(settings.keys.certificate, "broker.cert.pem")
    if cert_path.exists() and cert_path.suffix.lower() not in (".p12", ".pfx"):
        pinned = load_certificates(cert_path)[0]
    if store is not None:
        trusts = f"certificates issued by the CA in {', '.join(map(str, cas))}"
    elif pinned is not None:
        trusts = f"the broker certificate {cert_path}"
    else:
        trusts = "the certificate each archive carries (no CA or broker certificate found)"
    now = utc_now()

    def check(data: bytes, signature: bytes, manifest: ArchiveManifest) -> str:
        return verify_detached(
            manifest.certificate,
            manifest.signature,
            data,
            signature,
            store=store,
            pinned=pinned,
            at=now,
        )

    return check, trusts


def parse_until(text: str) -> datetime:
    """--until: a date (its midnight, UTC) or an ISO-8601 time (UTC when it says none)."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)
