"""Changes to an agency's API credentials: pure functions from agency to agency.

Tokens and SDK systems live in the directory record of their agency, so that
every instance sees a new or revoked credential as it sees any directory
change. Only hashes (tokens) and salts (systems) are kept; see broker.directory.auth.
"""

from __future__ import annotations

import dataclasses

from broker.core.errors import InputRefused, NotFound
from broker.core.problems import Problem
from broker.directory.book import Directory
from broker.directory.model import Agency, SdkSystem, Token


def add_token(agency: Agency, token: Token) -> Agency:
    return dataclasses.replace(agency, tokens=(*agency.tokens, token))


def _token(agency: Agency, token_id: str) -> Token:
    for token in agency.tokens:
        if token.id == token_id:
            return token
    raise NotFound(f"{agency.code} has no token {token_id}")


def revoke_token(agency: Agency, token_id: str) -> Agency:
    _token(agency, token_id)
    tokens = tuple(
        dataclasses.replace(t, revoked=True) if t.id == token_id else t for t in agency.tokens
    )
    return dataclasses.replace(agency, tokens=tokens)


def retire_token(agency: Agency, token_id: str, at_ms: int) -> Agency:
    """Let a token expire at `at_ms` (sooner if it expires sooner): rotation's grace."""
    old = _token(agency, token_id)
    expires = min(at_ms, old.expires_at_ms) if old.expires_at_ms else at_ms
    tokens = tuple(
        dataclasses.replace(t, expires_at_ms=expires) if t.id == token_id else t
        for t in agency.tokens
    )
    return dataclasses.replace(agency, tokens=tokens)


def add_system(directory: Directory, agency: Agency, system: SdkSystem) -> Agency:
    """Register an SDK system id; ids are unique across the whole directory."""
    for other in directory:
        if any(s.system_id == system.system_id for s in other.systems):
            raise InputRefused(
                [Problem("invalid-value", f"system id {system.system_id} belongs to {other.code}")]
            )
    return dataclasses.replace(agency, systems=(*agency.systems, system))


def replace_system(agency: Agency, system: SdkSystem) -> Agency:
    """The same system id with a new salt (a new secret) or new flags."""
    _system(agency, system.system_id)
    systems = tuple(system if s.system_id == system.system_id else s for s in agency.systems)
    return dataclasses.replace(agency, systems=systems)


def revoke_system(agency: Agency, system_id: str) -> Agency:
    return replace_system(agency, dataclasses.replace(_system(agency, system_id), revoked=True))


def _system(agency: Agency, system_id: str) -> SdkSystem:
    for system in agency.systems:
        if system.system_id == system_id:
            return system
    raise NotFound(f"{agency.code} has no SDK system {system_id}")
