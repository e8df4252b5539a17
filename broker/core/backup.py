"""What a backup holds, and how it is checked: its manifest. Pure.

A backup is a folder: the embedded log's consistent copy (`log.sqlite`, embedded
backend only), the keys folder (`keys/…`), key files configured outside it
(`elsewhere/…`), the configuration file, and `MANIFEST.json`, written last, which
names every file with its SHA-256, size and permissions, the docbroker version, the
time, the backend and the log's end offsets per topic and partition at that moment
(and, embedded, the offsets the consumer groups had committed in the same snapshot).

The shell copies and hashes; this module builds the manifest, reads it back
(refusing one that is not a manifest, or names a file outside the folder), decides
the permissions a copied file gets, and compares what a folder holds with what its
manifest says, naming each changed or missing file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from broker.core.errors import InputRefused
from broker.core.problems import Problem

MANIFEST = "MANIFEST.json"
FORMAT = 1
LOG_FILE = "log.sqlite"  # the log's name in a backup and in a restored data folder
KEYS = "keys"  # the keys folder's name, likewise
Role = Literal["log", "keys", "config", "elsewhere"]
ROLES: tuple[Role, ...] = ("log", "keys", "config", "elsewhere")
READ_MODELS = ("mailbox.sqlite", "documents.sqlite")
DAMAGED = "backup-damaged"

Offsets = Mapping[str, Mapping[int, int]]  # topic -> partition -> next offset

# Names of files that hold a secret: private keys, secrets, token hashes.
_SECRET = re.compile(
    r"(\.key(\.pem)?|\.p12|\.pfx|\.secret|^admin-tokens|^admin\.token|passphrase.*)$",
    re.IGNORECASE,
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class BackedUpFile:
    """One file of a backup: where it is in the folder, what it holds, where it came from."""

    path: str  # relative, POSIX, inside the backup folder
    role: Role
    sha256: str
    size: int
    mode: int  # permission bits it was written with (and is restored with)
    origin: str  # the path it was copied from

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "role": self.role,
            "sha256": self.sha256,
            "size": self.size,
            "mode": f"{self.mode:04o}",
            "origin": self.origin,
        }


@dataclass(frozen=True, slots=True)
class Manifest:
    """What one backup holds (MANIFEST.json)."""

    docbroker_version: str
    created_at: str  # ISO-8601 UTC, when the log's snapshot was taken
    backend: Literal["embedded", "kafka"]
    topic_prefix: str
    files: tuple[BackedUpFile, ...]
    end_offsets: Offsets = field(default_factory=dict)
    group_offsets: Mapping[str, Offsets] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def log(self) -> BackedUpFile | None:
        return next((f for f in self.files if f.role == "log"), None)

    def of_role(self, role: Role) -> list[BackedUpFile]:
        return [f for f in self.files if f.role == role]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def records_per_topic(self) -> dict[str, int]:
        """Records each topic had taken in at the snapshot (the sum of its end offsets)."""
        return {t: sum(parts.values()) for t, parts in self.end_offsets.items()}

    def to_json(self) -> bytes:
        body = {
            "format": FORMAT,
            "docbroker_version": self.docbroker_version,
            "created_at": self.created_at,
            "backend": self.backend,
            "topic_prefix": self.topic_prefix,
            "files": [f.to_json() for f in self.files],
            "end_offsets": _offsets_json(self.end_offsets),
            "group_offsets": {g: _offsets_json(o) for g, o in self.group_offsets.items()},
            "notes": list(self.notes),
        }
        return json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """The manifest in `data`; `InputRefused` (backup-damaged) when it is not one."""
        try:
            body = json.loads(data)
            if body.get("format") != FORMAT:
                raise ValueError(f"format {body.get('format')!r}, not {FORMAT}")
            if body["backend"] not in ("embedded", "kafka"):
                raise ValueError(f"unknown backend {body['backend']!r}")
            files = tuple(_file_of(f) for f in body["files"])
            if len({f.path for f in files}) != len(files):
                raise ValueError("a file is named twice")
            return cls(
                docbroker_version=str(body["docbroker_version"]),
                created_at=str(body["created_at"]),
                backend=body["backend"],
                topic_prefix=str(body["topic_prefix"]),
                files=files,
                end_offsets=_offsets_of(body.get("end_offsets", {})),
                group_offsets={
                    str(g): _offsets_of(o) for g, o in body.get("group_offsets", {}).items()
                },
                notes=tuple(str(n) for n in body.get("notes", ())),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputRefused([Problem(DAMAGED, f"{MANIFEST} is not a manifest: {exc}")]) from exc


def _offsets_json(offsets: Offsets) -> dict[str, dict[str, int]]:
    return {t: {str(p): n for p, n in sorted(parts.items())} for t, parts in offsets.items()}


def _offsets_of(raw: Mapping[str, Mapping[str, int]]) -> dict[str, dict[int, int]]:
    return {str(t): {int(p): int(n) for p, n in parts.items()} for t, parts in raw.items()}


def _file_of(raw: Mapping[str, Any]) -> BackedUpFile:
    role = raw["role"]
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    sha = str(raw["sha256"])
    if not _SHA256.match(sha):
        raise ValueError(f"{raw['path']}: not a SHA-256: {sha!r}")
    return BackedUpFile(
        path=safe_path(str(raw["path"])),
        role=role,
        sha256=sha,
        size=int(raw["size"]),
        mode=int(str(raw["mode"]), 8) & 0o777,
        origin=str(raw.get("origin", "")),
    )


def safe_path(path: str) -> str:
    """`path` when it names a file inside the backup folder (relative, no `..`, no
    empty part); a manifest may not make a restore write elsewhere."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a path inside the backup: {path!r}")
    return path


def is_secret(name: str) -> bool:
    """Whether a file of this name holds a secret (a private key, a shared secret, token
    hashes): it is readable by its owner only, in the backup and once restored."""
    return bool(_SECRET.search(name.rsplit("/", 1)[-1]))


def backed_up_mode(name: str, mode: int) -> int:
    """The permissions a copied file gets: its own, owner-only (at most 0600) for a
    secret and for the log (it holds every document), never executable."""
    mode &= 0o666
    if name == LOG_FILE or is_secret(name):
        mode &= 0o600
    return mode | 0o400  # the owner can always read its backup


def damaged(manifest: Manifest, found: Mapping[str, str | None]) -> list[Problem]:
    """What differs between a backup folder and its manifest: each file the manifest
    names that is missing (`found[path]` None) or whose SHA-256 differs, by name."""
    out = []
    for f in manifest.files:
        got = found.get(f.path)
        if got is None:
            out.append(Problem(DAMAGED, f"{f.path}: missing from the backup"))
        elif got != f.sha256:
            out.append(
                Problem(
                    DAMAGED,
                    f"{f.path}: changed since the backup (sha256 {got}; {MANIFEST}: {f.sha256})",
                )
            )
    if manifest.backend == "embedded" and manifest.log is None:
        out.append(Problem(DAMAGED, f"{MANIFEST} names no log file for the embedded backend"))
    return out


def unlisted(manifest: Manifest, present: Sequence[str]) -> list[str]:
    """Files of the backup folder its manifest does not name (they are not restored)."""
    named = {f.path for f in manifest.files} | {MANIFEST}
    return sorted(p for p in present if p not in named)


def topic_summary(manifest: Manifest) -> str:
    """`inbound 300, mailbox 600, …`: records per topic at the snapshot, prefix dropped."""
    prefix = manifest.topic_prefix
    counts = manifest.records_per_topic()
    return ", ".join(
        f"{t[len(prefix) :] if t.startswith(prefix) else t} {n}" for t, n in sorted(counts.items())
    )
