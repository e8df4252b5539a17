"""Sender signature policies, per agency with a default.

- required: a valid signature by a certificate bound to the sender, whose
  revocation was checked (unless the trust store accepts unchecked ones), or refuse;
- optional: verify a signature when present and record the verdict, its
  revocation status included (senders built on the official SDK carry placeholder
  certificates: refusing them would refuse real traffic), act on the signed part
  when it is valid;
- ignored: do not verify.

A certificate is bound to an agency by its SHA-256 fingerprint (pinned), or,
where no fingerprint is pinned, by its subject UID equal to one of the agency's
codes when `bind_by_subject_uid` is on (docbroker's development certificates
carry the code there). The agency directory holds each agency's policy and pins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

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
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # code -> all its codes

    def for_agency(self, code: str) -> SenderPolicy:
        return self.agencies.get(code, self.default)

    def binds(self, code: str, policy: SenderPolicy, fingerprint: str, uid: str | None) -> bool:
        """Whether a certificate (by fingerprint and subject UID) may sign for `code`."""
        if policy.certificates:
            return fingerprint.lower() in policy.certificates
        return (
            self.bind_by_subject_uid and uid is not None and uid in self.aliases.get(code, (code,))
        )
