"""Configuration: TOML plus DOCBROKER_* overrides, checked with clear messages."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from broker.config import (
    Settings,
    env_name,
    iter_fields,
    load_settings,
    parse_byte_size,
    render_toml,
)
from broker.core.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "docbroker.toml"
    path.write_text(text, encoding="utf-8")
    return path


class TestLoadSettings:
    def test_defaults_run_locally(self) -> None:
        """With no file and no environment: embedded backend on loopback."""
        s = load_settings(None, {})
        assert s.backend.type == "embedded"
        assert s.http.host == "127.0.0.1"
        assert s.limits.max_envelope_bytes == 32 * 1024 * 1024
        assert s.embedded_path == Path("var/log.sqlite")

    def test_file_values_are_read(self, tmp_path: Path) -> None:
        """Nested tables map onto nested settings; sizes may carry units."""
        path = write(
            tmp_path,
            """
            data_dir = "/srv/db"
            [backend]
            type = "kafka"
            [backend.kafka]
            bootstrap_servers = "k1:9092,k2:9092"
            [limits]
            max_envelope_bytes = "20 MiB"
        """,
        )
        s = load_settings(path, {})
        assert s.backend.type == "kafka"
        assert s.backend.kafka.bootstrap_servers == "k1:9092,k2:9092"
        assert s.limits.max_envelope_bytes == 20 * 1024 * 1024
        assert s.embedded_path == Path("/srv/db/log.sqlite")

    def test_environment_overrides_the_file(self, tmp_path: Path) -> None:
        """DOCBROKER_<PATH> wins over the file, with the file's types."""
        path = write(tmp_path, "[http]\nport = 9000\n")
        s = load_settings(
            path,
            {"DOCBROKER_HTTP_PORT": "9100", "DOCBROKER_BACKEND_EMBEDDED_SYNCHRONOUS": "normal"},
        )
        assert s.http.port == 9100
        assert s.backend.embedded.synchronous == "normal"

    def test_unknown_key_is_named_with_a_suggestion(self, tmp_path: Path) -> None:
        """A typo in the file is refused and the likely key suggested."""
        path = write(tmp_path, "[http]\nprot = 9000\n")
        with pytest.raises(ConfigError, match=r"http\.prot: unknown key \(did you mean port\?\)"):
            load_settings(path, {})

    def test_unknown_table_is_refused(self, tmp_path: Path) -> None:
        path = write(tmp_path, "[htp]\nport = 1\n")
        with pytest.raises(ConfigError, match=r"htp: unknown key \(did you mean http\?\)"):
            load_settings(path, {})

    def test_unknown_environment_variable_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="DOCBROKER_HTTP_PORTT: unknown setting"):
            load_settings(None, {"DOCBROKER_HTTP_PORTT": "1"})

    def test_client_and_test_variables_are_not_settings(self) -> None:
        """DOCBROKER_URL, DOCBROKER_CONFIG, DOCBROKER_VENV (bin/), DOCBROKER_KAFKA_* and
        DOCBROKER_TEST_* are allowed."""
        load_settings(
            None,
            {
                "DOCBROKER_URL": "http://x",
                "DOCBROKER_VENV": "/srv/docbroker/.venv",
                "DOCBROKER_CONFIG": "c.toml",
                "DOCBROKER_KAFKA_VERSION": "3.9.2",
                "DOCBROKER_KAFKA_PASSWORD": "secret",  # backend.kafka.sasl_password_env
                "DOCBROKER_KAFKA_KEY_PASSWORD": "secret",
                "DOCBROKER_TEST_KAFKA_BOOTSTRAP": "x:1",
            },
        )

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("[http]\nport = 70000\n", r"http\.port: must be at most 65535, got 70000"),
            ('[http]\nport = "80"\n', r"http\.port: expected an integer, got '80'"),
            ('[backend]\ntype = "redis"\n', r"backend\.type: expected one of 'embedded', 'kafka'"),
            ("[backend]\npartitions = 0\n", r"backend\.partitions: must be at least 1, got 0"),
            ('[limits]\nmax_envelope_bytes = "lots"\n', r"expected a size such as"),
            ("http = 5\n", r"http: expected a table"),
            (
                '[backend]\ntype = "kafka"\n[backend.kafka]\nreplication_factor = 2\n'
                "min_insync_replicas = 3\n",
                r"min_insync_replicas: 3 is more than backend\.kafka\.replication_factor 2",
            ),
            (
                '[http]\nmax_bytes_in_flight = "16 MiB"\n',
                r"http\.max_bytes_in_flight: 16777216 is less than limits\.max_envelope_bytes",
            ),
            (
                '[backend]\ntype = "kafka"\n[backend.kafka]\nsecurity_protocol = "SASL_SSL"\n',
                r"backend\.kafka\.sasl_username: required with security_protocol SASL_SSL "
                r"\(and the password in sasl_password_file or \$DOCBROKER_KAFKA_PASSWORD\)",
            ),
            (
                '[backend]\ntype = "kafka"\n[backend.kafka]\nsecurity_protocol = "SSL"\n'
                'ssl_certfile = "c.pem"\n',
                r"backend\.kafka\.ssl_certfile and ssl_keyfile: give both or neither",
            ),
            (
                '[backend]\ntype = "kafka"\n[backend.kafka]\nsasl_username = "docbroker"\n',
                r"PLAINTEXT sends no credentials",
            ),
            (
                '[backend.kafka]\nsasl_mechanism = "GSSAPI"\n',
                r"sasl_mechanism: expected one of 'SCRAM-SHA-512', 'SCRAM-SHA-256', 'PLAIN'",
            ),
        ],
    )
    def test_wrong_values_are_refused(self, tmp_path: Path, text: str, message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            load_settings(write(tmp_path, text), {})

    def test_all_errors_are_reported_together(self, tmp_path: Path) -> None:
        path = write(tmp_path, "[http]\nport = -1\nhost = 5\n")
        with pytest.raises(ConfigError) as info:
            load_settings(path, {})
        assert "http.port" in str(info.value) and "http.host" in str(info.value)

    def test_the_production_example_logs_in_to_kafka_with_scram(self) -> None:
        """config/docbroker.example.toml: SASL_SSL, SCRAM-SHA-512, the password in a file."""
        example = load_settings(Path(__file__).parents[2] / "config/docbroker.example.toml", {})
        kafka = example.backend.kafka
        assert (kafka.security_protocol, kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
        assert kafka.sasl_username and kafka.sasl_password_file and kafka.ssl_cafile

    def test_the_production_example_replicates_over_a_cluster(self) -> None:
        """config/docbroker.example.toml: Kafka, topics replicated 3 times with
        min.insync.replicas 2 (one broker of three may be lost); the built-in default
        stays 1 and 1, for the single development broker."""
        example = load_settings(Path(__file__).parents[2] / "config/docbroker.example.toml", {})
        assert example.backend.type == "kafka"
        kafka = example.backend.kafka
        assert (kafka.replication_factor, kafka.min_insync_replicas) == (3, 2)
        default = load_settings(None, {}).backend.kafka
        assert (default.replication_factor, default.min_insync_replicas) == (1, 1)

    def test_missing_file_and_bad_toml(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="not found"):
            load_settings(tmp_path / "nope.toml", {})
        with pytest.raises(ConfigError, match="not valid TOML"):
            load_settings(write(tmp_path, "[http\n"), {})


class TestByteSize:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            (1024, 1024),
            ("1024", 1024),
            ("32 MiB", 32 * 1024**2),
            ("500KB", 500_000),
            ("2GiB", 2 * 1024**3),
            ("1.5 MiB", int(1.5 * 1024**2)),
        ],
    )
    def test_parses(self, raw: str | int, expected: int) -> None:
        assert parse_byte_size(raw) == expected

    @pytest.mark.parametrize("raw", ["", "MiB", "12 parsecs", True, "-1"])
    def test_refuses(self, raw: object) -> None:
        with pytest.raises(ValueError, match="size"):
            parse_byte_size(raw)  # type: ignore[arg-type]


class TestRendering:
    def test_rendered_toml_loads_back_to_the_same_settings(self, tmp_path: Path) -> None:
        """`config show` output is itself a valid configuration."""
        text = render_toml(Settings())
        tomllib.loads(text)
        assert load_settings(write(tmp_path, text), {}) == Settings()

    def test_every_setting_has_help_and_a_unique_environment_name(self) -> None:
        names = [env_name(path) for path, _f, _t in iter_fields()]
        assert len(names) == len(set(names))
        for path, f, _t in iter_fields():
            assert f.metadata.get("help"), f"{'.'.join(path)} has no help text"
