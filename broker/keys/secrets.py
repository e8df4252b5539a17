"""Reading the secrets the broker holds: from a file, or from the environment.

Every secret (the broker's private keys, their passphrases, the SDK master key, the
national axis's shared secret, Kafka credentials) is read through here, once, at
start. A secret file that other users of the machine may read or write is refused
(`private_file`): a key readable by everyone is a key already given away, and the
broker says so instead of running with it. Group access is allowed (a deployment may
give a `docbroker` group the keys folder). A secret is never put in an error
message: errors name the file or the variable, never what it holds.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from broker.core.errors import ConfigError

OTHERS = stat.S_IRWXO  # read, write or execute by users outside the owner and group


def private_file(path: Path, what: str) -> None:
    """Refuse a secret file others may read or write (mode o+r or o+w), or that is not
    a regular file; ConfigError naming the file and the `chmod` that fixes it."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    if st.st_mode & OTHERS:
        mode = stat.S_IMODE(st.st_mode)
        raise ConfigError(
            f"{what} {path} may be read or written by every user (mode {mode:04o}); "
            f"a secret must not be: chmod o-rwx {path}"
        )


def read_private(path: Path, what: str) -> bytes:
    """The bytes of a secret file, once `private_file` allows it."""
    private_file(path, what)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_secret(what: str, *, file: str | Path = "", env: str = "") -> bytes | None:
    """A secret from `file` (checked by `private_file`, surrounding whitespace
    stripped) or else from the environment variable `env`; None when neither gives
    one. A named file that cannot be read is an error, not a fall-through to `env`."""
    if file:
        value = read_private(Path(file), what).strip()
        if not value:
            raise ConfigError(f"{what} file {file} is empty")
        return value
    if env:
        text = os.environ.get(env, "")
        if text.strip():
            return text.strip().encode()
    return None
