"""Secrets are read from a file (not readable by others) or the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.core.errors import ConfigError
from broker.keys.secrets import private_file, read_private, read_secret


def secret_file(tmp_path: Path, mode: int, data: bytes = b"s3cret-value\n") -> Path:
    path = tmp_path / "secret"
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o660])
def test_a_file_of_its_owner_and_group_is_read(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path, mode)
    assert read_secret("the thing", file=path) == b"s3cret-value"
    assert read_private(path, "the thing") == b"s3cret-value\n"


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602, 0o666, 0o601])
def test_a_file_others_may_read_or_write_is_refused_without_its_content(
    tmp_path: Path, mode: int
) -> None:
    path = secret_file(tmp_path, mode)
    with pytest.raises(ConfigError) as err:
        read_secret("the SDK master key", file=path)
    message = str(err.value)
    assert "the SDK master key" in message and str(path) in message
    assert f"{mode:04o}" in message and "chmod o-rwx" in message
    assert "s3cret" not in message


def test_a_missing_or_empty_file_is_an_error_not_a_fall_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCBROKER_TEST_SECRET", "from-env")
    with pytest.raises(ConfigError, match="cannot read the key passphrase"):
        read_secret("the key passphrase", file=tmp_path / "absent", env="DOCBROKER_TEST_SECRET")
    empty = secret_file(tmp_path, 0o600, b"\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_secret("the key passphrase", file=empty, env="DOCBROKER_TEST_SECRET")


def test_a_directory_is_not_a_secret_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        private_file(tmp_path, "the key")


def test_the_environment_is_read_when_no_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCBROKER_TEST_SECRET", "  from-env \n")
    assert read_secret("x", env="DOCBROKER_TEST_SECRET") == b"from-env"
    monkeypatch.setenv("DOCBROKER_TEST_SECRET", " ")
    assert read_secret("x", env="DOCBROKER_TEST_SECRET") is None
    assert read_secret("x") is None
