"""A secret file every user of the machine may read stops `docbroker serve` at start:
one line naming the file and the fix, exit status 2, nothing served."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def backend() -> str:
    return "embedded"


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("broker.key.pem", "the private key"),
        ("tls.key.pem", "the HTTPS private key"),
        ("sdk-master.key", "the SDK master key"),
        ("admin-tokens", "the admin tokens file"),
    ],
)
def test_a_secret_file_every_user_may_read_stops_the_start(
    daemon_env: dict[str, str], name: str, what: str
) -> None:
    keys = Path(daemon_env["DOCBROKER_DATA_DIR"]) / "keys"
    secret = keys / name
    if not secret.exists():
        secret.write_text("")
    secret.chmod(0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
    env.update(daemon_env, DOCBROKER_HTTP_PORT="0", DOCBROKER_HTTP_TLS="true")
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{what} {secret} may be read or written by every user (mode 0644)" in proc.stderr
    assert f"chmod o-rwx {secret}" in proc.stderr
    assert "serving" not in proc.stderr
