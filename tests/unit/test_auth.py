"""Credentials as values: tokens, SDK request signatures, client-certificate binding,
rate limits, credential files and credential changes. No server."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from adapters.http_api.ratelimit import RateLimiter
from broker import vdxp
from broker.core.errors import ConfigError, InputRefused, NotFound
from broker.directory import credentials as creds
from broker.directory.auth import (
    Method,
    NonceCache,
    Principal,
    Refusal,
    SdkCall,
    SdkRequest,
    agency_for_certificate,
    check_admin_token,
    check_sdk_request,
    check_token,
    derive_secret,
    new_system,
    new_token,
)
from broker.directory.book import Directory
from broker.directory.model import Agency, AgencyStatus, agency_from_mapping
from broker.keys.files import CachedFile, new_admin_token, parse_admin_hashes, parse_sdk_master_key

NOW = 1_795_000_000_000
MASTER = bytes(range(32))
A = Agency("H35", "UBND tỉnh", code102="000.00.00.H35")
B = Agency("H35.S01", "Văn phòng", code102="000.00.01.H35")


class Headers(dict):
    """Case-insensitive, like aiohttp's request headers."""

    def get(self, key, default=None):  # type: ignore[no-untyped-def, override]
        for k, v in self.items():
            if k.lower() == key.lower():
                return v
        return default

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value


def directory_with(*agencies: Agency) -> Directory:
    return Directory.of(agencies)


class TestTokens:
    def test_a_token_authenticates_its_agency_until_expired_or_revoked(self) -> None:
        plain, token = new_token(now_ms=NOW, expires_days=1)
        assert plain.startswith(f"dbk_{token.id}_") and plain not in json.dumps(
            creds.add_token(A, token).to_dict()
        )
        d = directory_with(creds.add_token(A, token), B)
        assert check_token(plain, d, now_ms=NOW) == Principal(Method.TOKEN, d.find("H35"))
        expired = check_token(plain, d, now_ms=NOW + 86400_000)
        assert isinstance(expired, Refusal) and "expired" in expired.message
        revoked = directory_with(creds.revoke_token(creds.add_token(A, token), token.id))
        refusal = check_token(plain, revoked, now_ms=NOW)
        assert isinstance(refusal, Refusal) and "revoked" in refusal.message

    def test_wrong_secret_unknown_id_and_garbage_are_refused_alike(self) -> None:
        plain, token = new_token(now_ms=NOW)
        d = directory_with(creds.add_token(A, token))
        wrong = plain[:-4] + ("AAAA" if not plain.endswith("AAAA") else "BBBB")
        for candidate in (wrong, f"dbk_ffffffff_{'x' * 32}", "hello", ""):
            result = check_token(candidate, d, now_ms=NOW)
            assert isinstance(result, Refusal) and result.code == "unauthenticated"

    def test_a_suspended_agency_is_forbidden(self) -> None:
        plain, token = new_token(now_ms=NOW)
        suspended = dataclasses.replace(A, status=AgencyStatus.SUSPENDED)
        result = check_token(plain, directory_with(creds.add_token(suspended, token)), now_ms=NOW)
        assert isinstance(result, Refusal) and result.code == "forbidden"

    def test_rotation_keeps_the_old_token_for_the_grace_period(self) -> None:
        old_plain, old = new_token(now_ms=NOW)
        new_plain, new = new_token(now_ms=NOW)
        a = creds.add_token(creds.retire_token(creds.add_token(A, old), old.id, NOW + 1000), new)
        d = directory_with(a)
        assert isinstance(check_token(old_plain, d, now_ms=NOW + 999), Principal)
        assert isinstance(check_token(old_plain, d, now_ms=NOW + 1000), Refusal)
        assert isinstance(check_token(new_plain, d, now_ms=NOW + 10**9), Principal)

    def test_tokens_survive_the_directory_record_round_trip(self) -> None:
        _, token = new_token(now_ms=NOW, label="qlvb")
        a = creds.add_token(A, token)
        back, problems = agency_from_mapping(json.loads(json.dumps(a.to_dict())))
        assert problems == [] and back == a

    def test_unknown_token_ids_are_not_found_when_changed(self) -> None:
        with pytest.raises(NotFound):
            creds.revoke_token(A, "nope")

    def test_admin_tokens(self, tmp_path: Path) -> None:
        path = tmp_path / "admin-tokens"
        plain = new_admin_token(path, "ops")
        hashes = parse_admin_hashes(path.read_text())
        assert plain not in path.read_text() and (path.stat().st_mode & 0o777) == 0o600
        assert check_admin_token(plain, hashes) == Principal(Method.ADMIN)
        assert check_admin_token(plain + "x", hashes) is None
        assert Principal(Method.ADMIN).admin and not Principal(Method.ADMIN).is_agency("H35")

    def test_cached_file_rereads_on_change(self, tmp_path: Path) -> None:
        path = tmp_path / "admin-tokens"
        cached = CachedFile(path, parse_admin_hashes, frozenset())
        assert cached.get() == frozenset()
        new_admin_token(path)
        assert len(cached.get()) == 1
        new_admin_token(path)
        assert len(cached.get()) == 2

    def test_sdk_master_key_file(self) -> None:
        assert parse_sdk_master_key(MASTER.hex() + "\n") == MASTER
        for bad in ("zz", "00" * 8):
            with pytest.raises(ConfigError):
                parse_sdk_master_key(bad)


def sdk_request(
    pairs: list[tuple[str, str]], *, secure: bool = True, peer: str = "10.1.2.3"
) -> SdkRequest:
    first: dict[str, str] = {}
    every: dict[str, list[str]] = {}
    for k, v in pairs:
        first.setdefault(k, v)
        every.setdefault(k.lower(), []).append(v)
    return SdkRequest(Headers(first), every, secure, peer)


class TestSdkSignatures:
    """Requests signed as the unchanged SDK signs them (broker.vdxp.ParameterMap)."""

    def setup_method(self) -> None:
        self.system = new_system("qlvb-h35", now_ms=NOW)
        self.agency = creds.add_system(Directory(), A, self.system)
        self.directory = directory_with(self.agency, B)
        self.secret = derive_secret(MASTER, self.system)

    def signed(self, secret: str | None = None, **params: str) -> list[tuple[str, str]]:
        entries = vdxp.request_map("qlvb-h35", "01122026T091234+0609", vdxp.JSON, params)
        return entries.headers(secret or self.secret)

    def check(self, pairs: list[tuple[str, str]], nonces: NonceCache | None = None, **kw):  # type: ignore[no-untyped-def]
        return check_sdk_request(
            sdk_request(pairs, **kw), self.directory, MASTER, nonces or NonceCache(), now_ms=NOW
        )

    def test_a_signed_request_authenticates_the_system_and_gives_its_parameters(self) -> None:
        call = self.check(self.signed(messagetype="edoc"))
        assert isinstance(call, SdkCall), call
        assert call.principal == Principal(Method.HMAC, self.agency)
        assert call.agencies == (self.agency,) and call.params.get("messagetype") == "edoc"

    def test_secrets_differ_per_system_and_per_master_key(self) -> None:
        other = new_system("qlvb-h35", now_ms=NOW)
        assert derive_secret(MASTER, other) != self.secret
        assert derive_secret(bytes(32), self.system) != self.secret

    def test_wrong_secret(self) -> None:
        result = self.check(self.signed("not the secret"))
        assert isinstance(result, Refusal) and "wrong secret" in result.message

    def test_a_changed_parameter_breaks_the_signature(self) -> None:
        pairs = [(k, "m2" if k == "XroadVnpt-docId" else v) for k, v in self.signed(docId="m1")]
        result = self.check(pairs)
        assert isinstance(result, Refusal) and "differs from its signed value" in result.message

    def test_the_sdks_fixed_timestamp_is_no_replay(self) -> None:
        """The SDK signs the timestamp its client object was built with, days ago, and
        no nonce: the same request twice is accepted (the channel stops replays)."""
        nonces = NonceCache()
        pairs = self.signed(docId="m1")
        assert isinstance(self.check(pairs, nonces), SdkCall)
        assert isinstance(self.check(pairs, nonces), SdkCall)

    def test_a_signed_nonce_is_held_to_the_window(self) -> None:
        nonces = NonceCache()
        entries = vdxp.request_map("qlvb-h35", str(NOW), vdxp.JSON, {"nonce": "n1"})
        pairs = entries.headers(self.secret)
        assert isinstance(self.check(pairs, nonces), SdkCall)
        again = self.check(pairs, nonces)
        assert isinstance(again, Refusal) and again.code == "replayed-request"
        stale = vdxp.request_map("qlvb-h35", str(NOW - 301_000), vdxp.JSON, {"nonce": "n2"})
        result = self.check(stale.headers(self.secret), nonces)
        assert isinstance(result, Refusal) and result.code == "replayed-request"

    def test_plain_http_only_where_allowed_and_only_from_its_networks(self) -> None:
        pairs = self.signed()
        refused = self.check(pairs, secure=False)
        assert isinstance(refused, Refusal) and refused.code == "insecure-transport"
        assert "HTTPS only" in refused.message
        plain = dataclasses.replace(self.system, plain_http=True, networks=("10.1.0.0/16",))
        self.directory = directory_with(creds.replace_system(self.agency, plain))
        assert isinstance(self.check(pairs, secure=False, peer="10.1.2.3"), SdkCall)
        outside = self.check(pairs, secure=False, peer="192.0.2.7")
        assert isinstance(outside, Refusal) and outside.code == "insecure-transport"
        assert isinstance(self.check(pairs, secure=True, peer="192.0.2.7"), Refusal)
        assert isinstance(self.check(pairs, secure=True, peer="10.1.9.9"), SdkCall)

    def test_a_system_acts_for_the_agencies_it_registered(self) -> None:
        sub = Agency("H35.X1", "Tổ công tác", parent="H35", registered_by="qlvb-h35")
        self.directory = directory_with(self.agency, B, sub)
        call = self.check(self.signed())
        assert isinstance(call, SdkCall)
        assert [a.code for a in call.agencies] == ["H35", "H35.X1"]
        assert call.acts_for("H35.X1") == sub and call.acts_for(B.code) is None

    def test_revoked_expired_and_unknown_systems(self) -> None:
        pairs = self.signed()
        self.directory = directory_with(creds.revoke_system(self.agency, "qlvb-h35"))
        assert "revoked" in self.check(pairs).message
        expiring = dataclasses.replace(self.system, expires_at_ms=NOW)
        self.directory = directory_with(creds.replace_system(self.agency, expiring))
        assert "expired" in self.check(pairs).message
        self.directory = directory_with(B)
        assert "unknown system" in self.check(pairs).message

    def test_malformed_signature_headers(self) -> None:
        good = self.signed()

        def with_(name: str, value: str) -> list[tuple[str, str]]:
            return [(k, value if k == name else v) for k, v in good]

        cases = [
            [],
            with_("XroadVnpt-sign-header", "not json"),
            with_("XroadVnpt-sign-header-key", "systemid"),
            with_("XroadVnpt-sign-header", json.dumps({"XroadVnpt-systemid": 1})),
        ]
        for pairs in cases:
            result = self.check(pairs)
            assert isinstance(result, Refusal) and result.code == "unauthenticated", pairs

    def test_system_ids_are_unique_across_the_directory(self) -> None:
        with pytest.raises(InputRefused):
            creds.add_system(self.directory, B, new_system("qlvb-h35", now_ms=NOW))

    def test_old_records_with_legacy_still_load(self) -> None:
        data = {**A.to_dict(), "systems": [{"system_id": "s", "salt": "ab", "legacy": True}]}
        agency, problems = agency_from_mapping(data)
        assert agency is not None and not problems
        assert agency.systems[0].system_id == "s" and not agency.systems[0].plain_http

    def test_the_nonce_cache_is_bounded(self) -> None:
        cache = NonceCache(window_ms=1000, capacity=3)
        for i in range(10):
            assert cache.fresh(f"n{i}", NOW + i)
        assert len(cache._seen) <= 3


class TestCertificates:
    FP = "ab" * 32

    def test_a_pinned_fingerprint_binds(self) -> None:
        d = directory_with(dataclasses.replace(B, certificates=(self.FP,)), A)
        result = agency_for_certificate(d, self.FP, "H35", bind_by_subject_uid=True)
        assert isinstance(result, Principal) and result.agency is not None
        assert result.agency.code == "H35.S01" and result.method is Method.MTLS

    def test_subject_uid_binds_unless_the_agency_pins_certificates(self) -> None:
        d = directory_with(A, dataclasses.replace(B, certificates=("cd" * 32,)))
        assert isinstance(agency_for_certificate(d, self.FP, "000.00.00.H35", True), Principal)
        assert isinstance(agency_for_certificate(d, self.FP, "H35.S01", True), Refusal)
        assert isinstance(agency_for_certificate(d, self.FP, "000.00.00.H35", False), Refusal)
        assert isinstance(agency_for_certificate(d, self.FP, None, True), Refusal)


class TestRateLimiter:
    def test_burst_then_rate(self) -> None:
        now = [0.0]
        limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
        assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
        assert limiter.take("a") == pytest.approx(0.5)
        assert limiter.take("b") == 0  # per key
        now[0] = 0.5
        assert limiter.take("a") == 0
        assert limiter.take("a") > 0

    def test_zero_rate_means_no_limit(self) -> None:
        limiter = RateLimiter(rate=0, burst=1)
        assert all(limiter.take("a") == 0 for _ in range(1000))
