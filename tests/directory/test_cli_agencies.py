"""`docbroker agencies ...` in process, on the embedded backend."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from broker.cli import cli
from tests.conftest import EXAMPLE_DIRECTORY_2024

ROOT = Path(__file__).resolve().parents[2]
CURRENT = ROOT / "config" / "directory" / "lai-chau.toml"


def run(tmp_path: Path, *args: str):
    env = {"DOCBROKER_DATA_DIR": str(tmp_path / "data")}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_import_is_idempotent_and_reports_changes(tmp_path: Path) -> None:
    first = json.loads(run(tmp_path, "agencies", "import", "--json", str(CURRENT)).output)
    assert len(first["new"]) == 69 and first["changed"] == []
    again = json.loads(run(tmp_path, "agencies", "import", "--json", str(CURRENT)).output)
    assert again == {"new": [], "changed": [], "unchanged": 69, "dry_run": False}
    dry = run(tmp_path, "agencies", "import", "--dry-run", str(EXAMPLE_DIRECTORY_2024))
    assert "would import" in dry.output
    assert len(json.loads(run(tmp_path, "agencies", "list", "--json").output)) == 69


def test_list_show_add_update_suspend_export(tmp_path: Path) -> None:
    run(tmp_path, "agencies", "import", str(CURRENT))
    shown = json.loads(run(tmp_path, "agencies", "show", "000.00.01.H35", "--json").output)
    assert shown["code"] == "H35.S01" and shown["path"] == "Ủy ban nhân dân tỉnh Lai Châu"
    added = run(
        tmp_path,
        "agencies",
        "add",
        "H35.S01.P1",
        "--name",
        "Phòng Hành chính",
        "--code102",
        "001.00.01.H35",
        "--parent",
        "H35.S01",
        "--level",
        "phòng",
    )
    assert added.exit_code == 0, added.output
    children = json.loads(run(tmp_path, "agencies", "list", "--parent", "H35.S01",
                              "--json").output)  # fmt: skip
    assert [c["code"] for c in children] == ["H35.S01.P1"]
    assert run(tmp_path, "agencies", "add", "H35.S01.P1", "--name", "x").exit_code == 1
    updated = run(
        tmp_path, "agencies", "update", "H35.S01.P1", "--email", "p1@laichau.gov.vn", "--json"
    )
    assert json.loads(updated.output)["email"] == "p1@laichau.gov.vn"
    assert json.loads(updated.output)["name"] == "Phòng Hành chính"
    suspended = json.loads(run(tmp_path, "agencies", "suspend", "H35.S01.P1", "--json").output)
    assert suspended["status"] == "suspended"
    assert "SUSPENDED" in run(tmp_path, "agencies", "list").output
    exported = tmp_path / "out.csv"
    run(tmp_path, "agencies", "export", "--format", "csv", "-o", str(exported))
    other = tmp_path / "other"
    result = json.loads(CliRunner().invoke(
        cli, ["agencies", "import", "--json", str(exported)],
        env={"DOCBROKER_DATA_DIR": str(other)}).output)  # fmt: skip
    assert len(result["new"]) == 70


def test_refusals(tmp_path: Path) -> None:
    run(tmp_path, "agencies", "import", str(CURRENT))
    assert run(tmp_path, "agencies", "show", "NOPE").exit_code == 1
    assert run(tmp_path, "agencies", "update", "NOPE", "--name", "x").exit_code == 1
    orphan = run(tmp_path, "agencies", "add", "H35.X", "--name", "x", "--parent", "H99")
    assert orphan.exit_code == 1 and "parent H99 is not in the directory" in orphan.output
    clash = run(tmp_path, "agencies", "add", "H35.Y", "--name", "y", "--code102", "000.00.01.H35")
    assert clash.exit_code == 1 and "already names H35.S01" in clash.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[[agency]]\ncode = "lower"\nname = "x"\n', encoding="utf-8")
    result = run(tmp_path, "agencies", "import", str(bad))
    assert result.exit_code == 1 and "not a QĐ 20/2020 code" in result.output


def test_audit_verify_on_an_empty_trail_and_trace_of_nothing(tmp_path: Path) -> None:
    result = run(tmp_path, "audit", "verify")
    assert result.exit_code == 0 and "0 events in 0 chains" in result.output
    assert run(tmp_path, "trace", "D,1").exit_code == 1


def test_sdk_systems_are_https_only_unless_allowed_from_their_networks(tmp_path: Path) -> None:
    """`system create --plain-http` needs the networks it may call from; plain HTTP is
    shown loudly in `agencies show`, and `system set` changes it without a new secret."""
    run(tmp_path, "keys", "init")
    run(tmp_path, "agencies", "import", str(CURRENT))
    refused = CliRunner().invoke(
        cli,
        ["agencies", "system", "create", "000.00.01.H35", "--plain-http"],
        env={"DOCBROKER_DATA_DIR": str(tmp_path / "data")},
    )
    assert refused.exit_code == 2 and "--network" in refused.output
    made = json.loads(
        run(tmp_path, "agencies", "system", "create", "000.00.01.H35", "--system-id", "qlvb-vp",
            "--plain-http", "--network", "10.20.0.7", "--json").output
    )  # fmt: skip
    assert made["plain_http"] and made["networks"] == ["10.20.0.7/32"] and made["secret"]
    shown = run(tmp_path, "agencies", "show", "000.00.01.H35").output
    assert "qlvb-vp (PLAIN HTTP allowed from 10.20.0.7/32)" in shown
    changed = json.loads(
        run(tmp_path, "agencies", "system", "set", "000.00.01.H35", "qlvb-vp", "--https-only",
            "--any-network", "--manage-agencies", "--json").output
    )  # fmt: skip
    assert changed == {"agency": "H35.S01", "systemid": "qlvb-vp", "plain_http": False,
                       "networks": [], "manage_agencies": True}  # fmt: skip
    listed = run(tmp_path, "agencies", "system", "list", "000.00.01.H35").output
    assert "HTTPS only" in listed and "manages sub-agencies" in listed


def test_strict_policy_is_shown_updated_and_exported(tmp_path: Path) -> None:
    """`--strict true|false|default`; the TOML and CSV exports carry it."""
    run(tmp_path, "agencies", "import", str(CURRENT))
    shown = json.loads(run(tmp_path, "agencies", "show", "H35.S01", "--json").output)
    assert shown["strict"] is None
    assert "default (validation.strict)" in run(tmp_path, "agencies", "show", "H35.S01").output
    updated = run(tmp_path, "agencies", "update", "H35.S01", "--strict", "true", "--json")
    assert json.loads(updated.output)["strict"] is True
    assert "strict           True" in run(tmp_path, "agencies", "show", "H35.S01").output
    run(tmp_path, "agencies", "update", "H35.S02", "--strict", "false")
    for fmt in ("toml", "csv"):
        exported = tmp_path / f"out.{fmt}"
        run(tmp_path, "agencies", "export", "--format", fmt, "-o", str(exported))
        other = {"DOCBROKER_DATA_DIR": str(tmp_path / fmt)}
        CliRunner().invoke(cli, ["agencies", "import", str(exported)], env=other)
        listed = CliRunner().invoke(cli, ["agencies", "list", "--json"], env=other).output
        strict = {a["code"]: a["strict"] for a in json.loads(listed)}
        assert (strict["H35.S01"], strict["H35.S02"], strict["H35"]) == (True, False, None)
    reset = run(tmp_path, "agencies", "update", "H35.S01", "--strict", "default", "--json")
    assert json.loads(reset.output)["strict"] is None
