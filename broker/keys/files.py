"""The broker's own credential files in the keys folder: admin token hashes, the SDK master key.

- `admin-tokens`: one SHA-256 hex digest per line, optionally followed by a
  label (`<hash>  <label>`); `#` starts a comment. Plain tokens are never
  stored: `docbroker keys admin-token` prints a new one once.
- `sdk-master.key`: 32 random bytes (hex); SDK systems' shared secrets are
  derived from it (broker.directory.auth.derive_secret), so every instance of one
  deployment must share the file, and replacing it changes every secret.

Both are read through `CachedFile`, which rereads a file when its mtime changes:
an admin token added or removed takes effect without a restart.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from broker.core.errors import ConfigError
from broker.directory.auth import TOKEN_PREFIX, sha256_hex
from broker.keys.secrets import private_file

T = TypeVar("T")

ADMIN_TOKENS = "admin-tokens"
ADMIN_TOKEN_COPY = "admin.token"  # noqa: S105 - a file name: the dev token, for bin/run
SDK_MASTER_KEY = "sdk-master.key"


def write_file(path: Path, data: bytes, *, secret: bool) -> None:
    """Write a file atomically; a secret one is readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)


def write_private(path: Path, data: bytes) -> None:
    write_file(path, data, secret=True)


def parse_admin_hashes(text: str) -> frozenset[str]:
    out = set()
    for line in text.splitlines():
        word = line.split("#", 1)[0].strip().split(maxsplit=1)
        if word and len(word[0]) == 64:
            out.add(word[0].lower())
    return frozenset(out)


def new_admin_token(path: Path, label: str = "") -> str:
    """A new admin token: its hash is appended to `path`; the token is returned once."""
    token = f"{TOKEN_PREFIX}_admin_{secrets.token_urlsafe(32)}"
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    line = f"{sha256_hex(token)}  {label}".rstrip() + "\n"
    write_private(path, (existing + line).encode())
    return token


def init_sdk_master_key(path: Path) -> bool:
    """Create the SDK master key if absent; True when created."""
    if path.exists():
        return False
    write_private(path, secrets.token_hex(32).encode() + b"\n")
    return True


def parse_sdk_master_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError("the SDK master key file must hold 64 hex digits") from None
    if len(key) < 32:
        raise ConfigError("the SDK master key must have at least 32 bytes")
    return key


@dataclass
class CachedFile(Generic[T]):
    """A file parsed once per modification; a missing file gives `missing`. A file
    that holds a secret (`private` names what it holds) is refused while others may
    read it."""

    path: Path
    parse: Callable[[str], T]
    missing: T
    private: str = ""
    _stamp: tuple[int, int] | None = None
    _value: T | None = None

    def get(self) -> T:
        try:
            st = self.path.stat()
        except (FileNotFoundError, NotADirectoryError):  # not there (nor its folder)
            return self.missing
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            if self.private:
                private_file(self.path, self.private)
            try:
                self._value = self.parse(self.path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise ConfigError(f"cannot read {self.path}: {exc.strerror}") from None
            self._stamp = stamp
        return self._value  # type: ignore[return-value]
