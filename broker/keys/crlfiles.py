"""CRL files, read at start and read again when they change, without a restart.

Whoever asks for the CRLs (a verification, in whichever thread or worker process it
runs; the daemon's revocation watch every few seconds) looks at each file's mtime, size
and inode at most once every `interval` seconds, and reads a file again when they
changed. A file that became unreadable or invalid (not a CRL, or not signed by the
configured CA it names) keeps the CRL last read from it, so that the revocations it
listed still count; that is logged once (until the file reads again) and reported
(`problems`: /readyz, docbroker_crl_file_failing). At start such a file is an error.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog
from cryptography import x509

from broker.core.errors import ConfigError
from broker.trust.certs import parse_crl, subject_text
from broker.trust.revocation import signed_by

log = structlog.get_logger(__name__)

Stamp = tuple[int, int, int]  # st_mtime_ns, st_size, st_ino


@dataclass
class CrlFile:
    """One file: the CRL last read from it, and why its current content is not used."""

    path: Path
    crl: x509.CertificateRevocationList
    stamp: Stamp | None
    read_at: datetime
    problem: str = ""  # empty while the file reads as a valid CRL
    stale_said: bool = False  # its CRL's being out of date was logged


def crl_problem(crl: x509.CertificateRevocationList, cas: Sequence[x509.Certificate]) -> str:
    """Why `crl` cannot be used: it names a configured CA that did not sign it. (A CRL
    of an issuer not configured, e.g. an intermediate certificates carry, is kept: its
    signature is checked against that issuer when a chain meets it.)"""
    named = [ca for ca in cas if ca.subject == crl.issuer]
    if named and not any(signed_by(crl, ca) for ca in named):
        return f"it is not signed by the key of {subject_text(named[0])}"
    return ""


class CrlFiles:
    """The CRLs of `paths`, kept current (broker.trust.store.CrlSource)."""

    def __init__(
        self,
        paths: Sequence[Path],
        cas: Sequence[x509.Certificate] = (),
        *,
        interval: float = 5.0,
        reporting: bool = True,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime],
    ) -> None:
        self.interval, self.reporting = interval, reporting
        self._cas = tuple(cas)
        self._clock, self._now = clock, now
        self._lock = threading.Lock()
        self.generation = 0
        self.files = [self._first(Path(p)) for p in paths]
        self._crls = tuple(f.crl for f in self.files)
        self._due = clock() + interval

    def _first(self, path: Path) -> CrlFile:
        stamp = _stamp(path)
        try:
            crl = parse_crl(path.read_bytes(), str(path))
        except OSError as exc:
            raise ConfigError(f"cannot read CRL {path}: {exc.strerror or exc}") from None
        problem = crl_problem(crl, self._cas)
        if problem:
            raise ConfigError(f"CRL {path}: {problem}")
        return CrlFile(path, crl, stamp, self._now())

    def current(self) -> tuple[x509.CertificateRevocationList, ...]:
        """The CRLs in force, after a look at the files when one is due."""
        if self._clock() >= self._due:
            self.refresh()
        return self._crls

    def refresh(self) -> bool:
        """Look at every file now; whether a CRL changed."""
        with self._lock:
            self._due = self._clock() + self.interval
            changed = [f for f in self.files if self._reread(f)]
            if changed:
                self._crls = tuple(f.crl for f in self.files)
                self.generation += 1
            return bool(changed)

    def _reread(self, f: CrlFile) -> bool:
        try:
            stamp = _stamp(f.path)
        except ConfigError as exc:
            self._failed(f, _without_path(exc, f.path), None)
            return False
        if stamp == f.stamp:
            return False
        try:
            crl = parse_crl(f.path.read_bytes(), str(f.path))
            problem = crl_problem(crl, self._cas)
        except OSError as exc:
            crl, problem = None, f"cannot read it: {exc.strerror or exc}"
        except ConfigError as exc:
            crl, problem = None, _without_path(exc, f.path)
        if crl is None or problem:
            self._failed(f, problem, stamp)
            return False
        f.crl, f.stamp, f.read_at, f.problem, f.stale_said = crl, stamp, self._now(), "", False
        if self.reporting:
            log.info("CRL read again", file=str(f.path), issuer=subject_text_of(crl))
        return True

    def _failed(self, f: CrlFile, problem: str, stamp: Stamp | None) -> None:
        """Keep the last good CRL; say so once per problem."""
        f.stamp = stamp  # read again when the file changes again
        if problem != f.problem and self.reporting:
            log.warning(
                "CRL file unusable: the CRL read before is kept",
                file=str(f.path),
                problem=problem,
                kept_since=f.read_at.isoformat(),
            )
        f.problem = problem

    def say_stale(self, now: datetime) -> None:
        """Log, once per CRL read, that a CRL is past its nextUpdate."""
        for f in self.files:
            next_update = f.crl.next_update_utc
            if next_update is None or next_update >= now or f.stale_said:
                continue
            f.stale_said = True
            if self.reporting:
                log.warning(
                    "CRL out of date: the revocation of its certificates is unchecked",
                    file=str(f.path),
                    issuer=subject_text_of(f.crl),
                    next_update=next_update.isoformat(),
                )

    def problems(self, now: datetime) -> list[str]:
        """What an operator should know: unusable files, CRLs past their nextUpdate."""
        out = []
        for f in self.files:
            if f.problem:
                out.append(
                    f"{f.path}: {f.problem}; the CRL read at {f.read_at:%Y-%m-%d %H:%M:%S} "
                    "UTC is kept"
                )
            next_update = f.crl.next_update_utc
            if next_update is not None and next_update < now:
                out.append(
                    f"{f.path}: the CRL of {subject_text_of(f.crl)} is out of date since "
                    f"{next_update:%Y-%m-%d %H:%M} UTC (its nextUpdate): revocation by it "
                    "is unchecked"
                )
        return out


def subject_text_of(crl: x509.CertificateRevocationList) -> str:
    try:
        return crl.issuer.rfc4514_string()
    except ValueError:
        return "<unreadable issuer>"


def _without_path(exc: ConfigError, path: Path) -> str:
    """The error's message without the path it starts with (the report names it)."""
    text = str(exc)
    for prefix in (f"{path}: ", f"cannot read CRL {path}: "):
        if text.startswith(prefix):
            return ("cannot read it: " if "cannot read" in prefix else "") + text[len(prefix) :]
    return text


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"cannot read CRL {path}: {exc.strerror or exc}") from None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
