"""Sender signature policies, per agency with a default.

- required: a valid signature by a certificate bound to the sender, or refuse;
- optional: verify a signature when present and record the verdict (senders
  built on the official SDK carry placeholder certificates: refusing them would
  refuse real traffic), act on the signed part when it is valid;
- ignored: do not verify.

A certificate is bound to an agency by its SHA-256 fingerprint (pinned), or,
where no fingerprint is pinned, by its subject UID equal to the agency code
when `bind_by_subject_uid` is on (docbroker's development certificates carry
the code there). The agency directory will hold the pins; today they come
from `trust.policy_file`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from broker.errors import ConfigError

Mode = Literal["required", "optional", "ignored"]
MODES: tuple[Mode, ...] = ("required", "optional", "ignored")


@dataclass(frozen=True, slots=True)
class SenderPolicy:
    mode: Mode = "optional"
    allow_sha1: bool = False
    certificates: frozenset[str] = frozenset()  # pinned SHA-256 fingerprints, lower-case hex


@dataclass(frozen=True)
class PolicyBook:
    default: SenderPolicy = SenderPolicy()
    agencies: Mapping[str, SenderPolicy] = field(default_factory=dict)
    bind_by_subject_uid: bool = True

    def for_agency(self, code: str) -> SenderPolicy:
        return self.agencies.get(code, self.default)

    def binds(self, code: str, policy: SenderPolicy, fingerprint: str, uid: str | None) -> bool:
        """Whether a certificate (by fingerprint and subject UID) may sign for `code`."""
        if policy.certificates:
            return fingerprint.lower() in policy.certificates
        return self.bind_by_subject_uid and uid == code

    @classmethod
    def from_file(cls, path: Path, default: SenderPolicy, bind_by_subject_uid: bool) -> PolicyBook:
        """Per-agency policies from TOML: [agencies."CODE"] policy, allow_sha1, certificates."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read the policy file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        unknown = set(data) - {"agencies"}
        if unknown:
            raise ConfigError(
                f"{path}: unknown tables {sorted(unknown)} (expected [agencies.CODE])"
            )
        agencies = {
            code: _policy(entry, default, f"{path}: agencies.{code}")
            for code, entry in data.get("agencies", {}).items()
        }
        return cls(default, agencies, bind_by_subject_uid)


def _policy(entry: Any, default: SenderPolicy, where: str) -> SenderPolicy:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(entry) - {"policy", "allow_sha1", "certificates"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    mode = entry.get("policy", default.mode)
    if mode not in MODES:
        raise ConfigError(f"{where}.policy: expected one of {', '.join(MODES)}, got {mode!r}")
    certs = entry.get("certificates", [])
    if not isinstance(certs, list) or not all(isinstance(c, str) and len(c) == 64 for c in certs):
        raise ConfigError(f"{where}.certificates: expected SHA-256 fingerprints (64 hex digits)")
    allow = entry.get("allow_sha1", default.allow_sha1)
    if not isinstance(allow, bool):
        raise ConfigError(f"{where}.allow_sha1: expected true or false")
    return SenderPolicy(mode, allow, frozenset(c.lower() for c in certs))
