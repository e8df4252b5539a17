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


class TestValidateAndInspect:
    def test_validate_exit_status_and_located_errors(self, tmp_path: Path) -> None:
        from tests.edxml_samples import document, status

        good, also, bad = tmp_path / "a.edxml", tmp_path / "b.edxml", tmp_path / "c.edxml"
        good.write_bytes(document())
        also.write_bytes(status())
        bad.write_bytes(b"1212" + document())
        ok = invoke("validate", str(good), str(also))
        assert ok.exit_code == 0
        assert "a.edxml: valid document from 000.00.00.H35 to 000.00.01.H35" in ok.output
        refused = invoke("validate", str(good), str(bad))
        assert refused.exit_code == 1
        assert f"{bad}:1:1: not-well-formed: 4 stray byte(s)" in refused.output

    def test_validate_json(self, tmp_path: Path) -> None:
        from tests.edxml_samples import document

        bad = tmp_path / "c.edxml"
        bad.write_bytes(document(recipients=("A", "A")))
        result = invoke("validate", "--json", str(bad))
        assert result.exit_code == 1
        (entry,) = json.loads(result.stdout)
        assert entry["valid"] is False
        assert entry["problems"][0]["code"] == "duplicate-recipient"
        assert entry["problems"][0]["location"]["path"].endswith("To[2]")

    def test_validate_refuses_an_oversized_file_without_reading_it(self, tmp_path: Path) -> None:
        big = tmp_path / "big.edxml"
        big.write_bytes(b" " * 4096)
        result = invoke("validate", str(big), env={"DOCBROKER_LIMITS_MAX_ENVELOPE_BYTES": "1024"})
        assert result.exit_code == 1 and "too-large" in result.output and "4096" in result.output

    def test_inspect_text_and_json(self, tmp_path: Path) -> None:
        from tests.edxml_samples import full_document

        path = tmp_path / "d.edxml"
        path.write_bytes(full_document(attachments={"cid:1": b"x" * 2048}))
        text = invoke("inspect", str(path))
        assert text.exit_code == 0
        assert "from            000.00.00.H35 UBND tỉnh Lai Châu" in text.output
        assert "attachment      1.pdf (application/pdf, 2.0 KiB)" in text.output
        data = json.loads(invoke("inspect", "--json", str(path)).stdout)
        assert data["valid"] is True
        assert data["envelope"]["attachments"][0]["decoded_size"] == 2048
        assert data["envelope"]["promulgation"]["date"] == "2026-11-20"

    def test_inspect_shows_what_it_can_of_an_invalid_package(self, tmp_path: Path) -> None:
        from tests.edxml_samples import status

        path = tmp_path / "s.edxml"
        path.write_bytes(status(code="99"))
        result = invoke("inspect", str(path))
        assert result.exit_code == 1
        assert "kind            status" in result.output
        assert "unknown-status-code" in result.output


class TestWarningsOnTheCommandLine:
    """An irregular package is valid (exit 0), its warnings printed and in --json;
    `--strict` refuses it as a strict sender's would be."""

    def irregular(self, tmp_path: Path) -> Path:
        from tests.edxml_samples import full_document, hop

        path = tmp_path / "axis.edxml"
        path.write_bytes(
            full_document(trace=hop("null"), extra_header="<edXML:Vendor>x</edXML:Vendor>")
        )
        return path

    def test_validate(self, tmp_path: Path) -> None:
        path = self.irregular(tmp_path)
        text = invoke("validate", str(path))
        assert text.exit_code == 0
        assert f"{path}: valid document from 000.00.00.H35" in text.output
        assert "(2 warnings)" in text.output
        assert (
            f"{path}:23:0: warning: unknown-element: edXML:Vendor is not an element of the "
            "schema; ignored (forwarded unchanged) "
            "[/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/Vendor]"
        ) in text.output
        assert f"{path}:26:0: warning: trace-organ-id-missing:" in text.output
        (entry,) = json.loads(invoke("validate", "--json", str(path)).stdout)
        assert entry["valid"] is True and entry["problems"] == []
        assert [w["code"] for w in entry["warnings"]] == [
            "unknown-element",
            "trace-organ-id-missing",
        ]
        strict = invoke("validate", "--strict", "--json", str(path))
        assert strict.exit_code == 1
        (entry,) = json.loads(strict.stdout)
        assert [p["code"] for p in entry["problems"]] == [
            "unknown-element",
            "trace-organ-id-missing",
        ]
        assert entry["warnings"] == []

    def test_inspect(self, tmp_path: Path) -> None:
        path = self.irregular(tmp_path)
        text = invoke("inspect", str(path))
        assert text.exit_code == 0
        assert "trace           null at 2026-11-20 08:00:00" in text.output
        assert "warning: trace-organ-id-missing: TraceHeader/OrganId is 'null'" in text.output
        data = json.loads(invoke("inspect", "--json", str(path)).stdout)
        assert data["valid"] is True and len(data["warnings"]) == 2
        assert invoke("inspect", "--strict", str(path)).exit_code == 1
