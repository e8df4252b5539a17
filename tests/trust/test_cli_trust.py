"""`docbroker keys init|issue|show`, `sign` and `verify` in process."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.cli import cli
from broker.keys.pem import load_key_material
from tests.edxml_samples import full_document
from tests.trust.signing import sign_as_sender

INTEROP = Path(__file__).resolve().parents[3] / "shared" / "interop"


def run(tmp_path: Path, *args: str, **env: str):
    env = {"DOCBROKER_DATA_DIR": str(tmp_path / "data"), **env}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


class TestKeys:
    def test_init_is_idempotent_and_keeps_keys_private(self, tmp_path: Path) -> None:
        first = run(tmp_path, "keys", "init", "--agency", "000.00.01.H35=Sở Nội vụ", "--json")
        assert first.exit_code == 0
        made = json.loads(first.output)
        keys = tmp_path / "data" / "keys"
        assert sorted(Path(p).relative_to(keys).as_posix() for p in made["created"]) == [
            "admin-tokens",
            "admin.token",
            "agencies/000.00.01.H35.cert.pem",
            "agencies/000.00.01.H35.p12",
            "broker.cert.pem",
            "broker.key.pem",
            "ca.cert.pem",
            "ca.crl.pem",
            "ca.key.pem",
            "sdk-master.key",
            "tls.cert.pem",
            "tls.key.pem",
        ]
        assert "000.00.01.H35" in made["agencies"]
        assert (keys / "admin.token").read_text().strip() == made["admin_token"]
        for name in (
            "ca.key.pem",
            "broker.key.pem",
            "tls.key.pem",
            "agencies/000.00.01.H35.key.pem",
            "sdk-master.key",
            "admin-tokens",
            "admin.token",
        ):
            assert stat.S_IMODE(os.stat(keys / name).st_mode) == 0o600, name
        again = json.loads(run(tmp_path, "keys", "init", "--json").output)
        assert again["created"] == [] and len(again["kept"]) == 9
        assert again["admin_token"] is None, "an admin token is made once"
        material = load_key_material(keys / "agencies" / "000.00.01.H35.p12", None, None)
        assert material.certificate.subject.rfc4514_string().startswith("UID=000.00.01.H35")

    def test_show_reports_expiry(self, tmp_path: Path) -> None:
        run(tmp_path, "keys", "init")
        rows = json.loads(run(tmp_path, "keys", "show", "--json").output)
        assert [r["role"] for r in rows] == ["broker", "ca"]
        assert all(r["days_left"] > 300 and not r["expiring"] for r in rows)

    def test_show_without_keys_says_how_to_make_them(self, tmp_path: Path) -> None:
        result = run(tmp_path, "keys", "show")
        assert result.exit_code == 2 and "docbroker keys init" in result.output

    def test_issue(self, tmp_path: Path) -> None:
        run(tmp_path, "keys", "init")
        result = json.loads(run(tmp_path, "keys", "issue", "X.1", "--name", "Xã", "--json").output)
        assert result["agency"] == "X.1" and len(result["fingerprint"]) == 64


class TestSignAndVerify:
    def test_sign_then_verify(self, tmp_path: Path) -> None:
        run(tmp_path, "keys", "init")
        src, out = tmp_path / "d.edxml", tmp_path / "signed.edxml"
        src.write_bytes(full_document())
        assert run(tmp_path, "sign", str(src), "-o", str(out)).exit_code == 0
        ok = run(tmp_path, "verify", str(out))
        assert ok.exit_code == 0
        assert "broker signature (xmldsig, rsa-sha256/sha256) by UID=000.99.99.H35" in ok.output
        assert ok.output.rstrip().endswith(": valid")
        tampered = tmp_path / "t.edxml"
        tampered.write_bytes(out.read_bytes().replace(b"1.pdf", b"2.pdf", 1))
        bad = run(tmp_path, "verify", "--json", str(tampered))
        assert bad.exit_code == 1
        (report,) = json.loads(bad.output)
        assert report["signatures"][0]["valid"] is False
        assert "changed after signing" in report["signatures"][0]["reason"]

    def test_verify_lists_every_signature(self, tmp_path: Path) -> None:
        run(tmp_path, "keys", "init", "--agency", "000.00.00.H35")
        from broker.keys.pem import load_key_material as load

        agency = load(tmp_path / "data/keys/agencies/000.00.00.H35.p12", None, None)
        src = tmp_path / "s.edxml"
        src.write_bytes(sign_as_sender(full_document(), agency, profile="edxml"))
        signed = tmp_path / "both.edxml"
        run(tmp_path, "sign", str(src), "-o", str(signed))
        report = json.loads(run(tmp_path, "verify", "--json", str(signed)).output)
        sigs = {s["role"]: s for s in report[0]["signatures"]}
        assert sigs["broker"]["valid"] is True
        assert sigs["sender"]["profile"] == "edxml"

    def test_verify_checks_revocation_as_for_a_required_signature(self, tmp_path: Path) -> None:
        """The development CA's CRL is used by default; a CA given with --ca has none:
        not valid, saying why, unless unchecked revocations are accepted."""
        run(tmp_path, "keys", "init")
        src, out = tmp_path / "d.edxml", tmp_path / "signed.edxml"
        src.write_bytes(full_document())
        run(tmp_path, "sign", str(src), "-o", str(out))
        (checked,) = json.loads(run(tmp_path, "verify", "--json", str(out)).output)
        assert checked["signatures"][0]["revocation"] == "good"
        ca = str(tmp_path / "data" / "keys" / "ca.cert.pem")
        crls = {"DOCBROKER_TRUST_CA_FILES": ca}  # configured: no CRL unless configured too
        refused = run(tmp_path, "verify", str(out), **crls)
        assert refused.exit_code == 1
        assert (
            "NOT VALID: revocation could not be checked (no CRL of CN=docbroker" in refused.output
        )
        accepted = run(
            tmp_path, "verify", str(out), DOCBROKER_TRUST_UNCHECKED_REVOCATION="accept", **crls
        )
        assert accepted.exit_code == 0
        assert ": valid (revocation not checked: no CRL of CN=docbroker" in accepted.output

    def test_verify_an_unsigned_package(self, tmp_path: Path) -> None:
        src = tmp_path / "d.edxml"
        src.write_bytes(full_document())
        result = run(tmp_path, "verify", str(src))
        assert result.exit_code == 0 and "no signature" in result.output

    def test_verify_a_broken_package(self, tmp_path: Path) -> None:
        src = tmp_path / "d.edxml"
        src.write_bytes(b"1212<?xml version='1.0'?><a/>")
        result = run(tmp_path, "verify", str(src))
        assert result.exit_code == 1 and "not-well-formed" in result.output

    @pytest.mark.skipif(not INTEROP.is_dir(), reason="../shared/interop is not here")
    def test_the_official_samples_placeholder_certificate(self, tmp_path: Path) -> None:
        """edoc_update.edxml's certificate is a placeholder: not valid, and why."""
        result = run(tmp_path, "verify", str(INTEROP / "vnpt-sdk-samples" / "edoc_update.edxml"))
        assert result.exit_code == 1
        assert "sender signature (edxml, rsa-sha1/sha1)" in result.output
        assert "NOT VALID: certificate 1 in KeyInfo is malformed" in result.output
