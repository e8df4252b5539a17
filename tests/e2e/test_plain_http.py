"""Secure by default, as a real `docbroker serve` does it: plain HTTP on an address other
than loopback is refused before anything starts, unless the configuration says
`http.allow_plain`; then it starts, says so in a warning and in a gauge.

The daemons here listen on every address (0.0.0.0) for a moment; every request goes to
127.0.0.1."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.daemon import Daemon
from tests.e2e.test_shutdown import serve_once

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("backend", ["embedded"])]


def metrics(daemon: Daemon) -> str:
    with urllib.request.urlopen(f"{daemon.url}/metrics", timeout=10, context=daemon.tls) as r:
        return r.read().decode()


def warnings(daemon: Daemon) -> list[dict]:
    return [e for e in daemon.log_events() if e.get("level") == "warning"]


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::"])
def test_plain_http_beyond_loopback_is_refused_before_anything_starts(
    tmp_path: Path, daemon_env: dict[str, str], host: str
) -> None:
    env = {**daemon_env, "DOCBROKER_HTTP_HOST": host, "DOCBROKER_HTTP_PORT": "8080"}
    done = serve_once(env, tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("docbroker: config-invalid: refusing to serve plain HTTP on ")
    assert "http.tls = true" in line and "http.allow_plain = true" in line
    data = Path(daemon_env["DOCBROKER_DATA_DIR"])
    assert sorted(p.name for p in data.iterdir()) == ["keys"], "nothing started"


def test_allow_plain_starts_with_a_warning_and_the_gauge(
    tmp_path: Path, daemon_env: dict[str, str]
) -> None:
    env = {**daemon_env, "DOCBROKER_HTTP_HOST": "0.0.0.0", "DOCBROKER_HTTP_ALLOW_PLAIN": "true"}
    daemon = Daemon(tmp_path / "d", env).start()
    try:
        text = metrics(daemon)
        assert 'docbroker_http_plain_listener{listener="api"} 1.0' in text
        (warned,) = [w for w in warnings(daemon) if "http.allow_plain" in w["event"]]
        assert warned["url"] == f"http://0.0.0.0:{daemon.port}"
    finally:
        assert daemon.stop() == 0


def test_loopback_plain_and_tls_beyond_loopback_start_without_a_warning(
    tmp_path: Path, daemon_env: dict[str, str]
) -> None:
    """The development setup (bin/run: plain on 127.0.0.1), and HTTPS on every address."""
    keys = Path(daemon_env["DOCBROKER_DATA_DIR"]) / "keys"
    loopback = Daemon(tmp_path / "loopback", daemon_env).start()
    try:
        assert 'docbroker_http_plain_listener{listener="api"} 0.0' in metrics(loopback)
    finally:
        assert loopback.stop() == 0
    env = {**daemon_env, "DOCBROKER_HTTP_HOST": "0.0.0.0", "DOCBROKER_HTTP_TLS": "true"}
    tls = Daemon(tmp_path / "tls", env, ca_file=keys / "ca.cert.pem").start()
    try:
        assert 'docbroker_http_plain_listener{listener="api"} 0.0' in metrics(tls)
        serving = [e for e in tls.log_events() if e["event"] == "docbroker serving"]
        assert serving[0]["url"] == f"https://0.0.0.0:{tls.port}"
        assert not [w for w in warnings(tls) if "plain" in json.dumps(w)]
    finally:
        assert tls.stop() == 0


def test_a_tls_certificate_that_cannot_be_read_stops_the_start_before_anything(
    tmp_path: Path, daemon_env: dict[str, str]
) -> None:
    missing = tmp_path / "no-such.cert.pem"
    env = {
        **daemon_env,
        "DOCBROKER_HTTP_HOST": "0.0.0.0",
        "DOCBROKER_HTTP_TLS": "true",
        "DOCBROKER_HTTP_TLS_CERTIFICATE": str(missing),
    }
    done = serve_once(env, tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"docbroker: config-invalid: cannot load the TLS certificate {missing}")
    data = Path(daemon_env["DOCBROKER_DATA_DIR"])
    assert sorted(p.name for p in data.iterdir()) == ["keys"], "nothing started"
