"""The CLI in process (click's CliRunner): exit statuses and JSON output."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from broker.cli import cli


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env or {}, catch_exceptions=False)


class TestConfigCommands:
    def test_check_valid(self, tmp_path: Path) -> None:
        cfg = tmp_path / "c.toml"
        cfg.write_text('[backend]\ntype = "embedded"\n')
        result = invoke("--config", str(cfg), "config", "check")
        assert result.exit_code == 0 and "configuration valid" in result.output

    def test_check_invalid_exits_2_with_the_code(self, tmp_path: Path) -> None:
        cfg = tmp_path / "c.toml"
        cfg.write_text("[http]\nport = 'x'\n")
        result = invoke("--config", str(cfg), "config", "check")
        assert result.exit_code == 2
        assert "config-invalid" in result.output and "http.port" in result.output

    def test_check_invalid_as_json(self, tmp_path: Path) -> None:
        result = invoke("config", "check", "--json", env={"DOCBROKER_HTTP_PORT": "x"})
        assert result.exit_code == 2
        body = json.loads(result.stdout)
        assert body["ok"] is False and body["code"] == "config-invalid"

    def test_show_defaults_is_loadable_toml(self, tmp_path: Path) -> None:
        result = invoke("config", "show", "--defaults")
        cfg = tmp_path / "shown.toml"
        cfg.write_text(result.output)
        assert invoke("--config", str(cfg), "config", "check").exit_code == 0

    def test_show_json(self) -> None:
        result = invoke("config", "show", "--json", env={"DOCBROKER_HTTP_PORT": "9999"})
        assert json.loads(result.output)["http"]["port"] == 9999


class TestClientCommands:
    def test_unreachable_server_is_an_environment_error(self, tmp_path: Path) -> None:
        doc = tmp_path / "d.edxml"
        doc.write_bytes(b"<x/>")
        result = invoke("send", "--url", "http://127.0.0.1:9", str(doc))
        assert result.exit_code == 2 and "backend-unavailable" in result.output

    def test_usage_error_exits_2(self) -> None:
        assert invoke("inbox").exit_code == 2
