"""Which listeners the configuration asks for, and when plain HTTP is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.http_api.listeners import Listener, is_loopback, listeners
from broker.cli import cli
from broker.config import load_settings
from broker.core.errors import ConfigError


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "localhost."]
)
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["", "0.0.0.0", "::", "10.20.0.5", "192.0.2.1", "fe80::1", "docbroker.tinh.lc"]
)
def test_every_other_address_is_not_loopback(host: str) -> None:
    """An empty host, 0.0.0.0 and :: are every address; a name may resolve anywhere."""
    assert not is_loopback(host)


def plan(**env: str) -> list[Listener]:
    return listeners(
        load_settings(None, {f"DOCBROKER_HTTP_{k.upper()}": v for k, v in env.items()})
    )


@pytest.mark.parametrize(
    ("host", "where"), [("0.0.0.0", "0.0.0.0:8080"), ("", "*:8080"), ("::", "[::]:8080")]
)
def test_plain_http_beyond_loopback_is_refused_naming_the_fix(host: str, where: str) -> None:
    with pytest.raises(ConfigError) as refused:
        plan(host=host)
    assert str(refused.value) == (
        f"refusing to serve plain HTTP on {where}, which is not a loopback address: set "
        "http.tls = true with a certificate (http.tls_certificate, http.tls_private_key), "
        "or http.allow_plain = true to accept plain HTTP"
    )
    assert "\n" not in str(refused.value)


def test_loopback_tls_or_allow_plain_may_listen() -> None:
    (loopback,) = plan()
    assert (loopback.host, loopback.tls, loopback.plain_on_purpose) == ("127.0.0.1", False, False)
    (tls,) = plan(host="0.0.0.0", tls="true")
    assert tls.tls and not tls.plain_on_purpose
    (allowed,) = plan(host="0.0.0.0", allow_plain="true")
    assert not allowed.tls and allowed.plain_on_purpose


def test_the_plain_sdk_listener_is_off_unless_a_host_is_named() -> None:
    assert [each.name for each in plan(host="0.0.0.0", tls="true")] == ["api"]
    api, sdk = plan(host="0.0.0.0", tls="true", sdk_plain_host="0.0.0.0", sdk_plain_port="8081")
    assert (api.name, api.tls) == ("api", True)
    assert (sdk.name, sdk.where, sdk.tls, sdk.plain_on_purpose) == (
        "sdk",
        "0.0.0.0:8081",
        False,
        True,
    )
    assert sdk.setting == "http.sdk_plain_host"


def test_the_plain_sdk_listener_does_not_lift_the_rule_for_the_api() -> None:
    with pytest.raises(ConfigError, match=r"http\.allow_plain = true"):
        plan(host="0.0.0.0", sdk_plain_host="0.0.0.0")


ROOT = Path(__file__).resolve().parents[2]


def test_the_production_example_serves_https_on_every_address() -> None:
    example = load_settings(ROOT / "config" / "docbroker.example.toml", {})
    (api,) = listeners(example)
    assert (api.host, api.tls, api.plain_on_purpose) == ("0.0.0.0", True, False)
    assert example.http.tls_certificate and example.http.tls_private_key
    assert not example.http.allow_plain


def test_the_development_configuration_serves_plain_http_on_loopback() -> None:
    """bin/run's: plain HTTP, accepted because it is loopback only."""
    (api,) = listeners(load_settings(ROOT / "config" / "docbroker.dev.toml", {}))
    assert (api.host, api.tls, api.plain_on_purpose) == ("127.0.0.1", False, False)


def test_config_check_reports_what_serve_would_refuse() -> None:
    run = CliRunner().invoke(
        cli, ["config", "check"], env={"DOCBROKER_HTTP_HOST": "0.0.0.0"}, catch_exceptions=False
    )
    assert run.exit_code == 2
    assert "refusing to serve plain HTTP on 0.0.0.0:8080" in run.output
    allowed = CliRunner().invoke(
        cli,
        ["config", "check"],
        env={"DOCBROKER_HTTP_HOST": "0.0.0.0", "DOCBROKER_HTTP_ALLOW_PLAIN": "true"},
        catch_exceptions=False,
    )
    assert allowed.exit_code == 0, allowed.output
