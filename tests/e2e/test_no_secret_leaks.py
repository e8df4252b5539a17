"""No secret the broker holds appears in its logs, metrics, console or answers.

A real `docbroker serve` holds every kind of secret at once: an encrypted broker key
and its passphrase (from the environment), the SDK master key and an SDK system's
derived secret, an agency's API token, an admin token, and the national axis's
shared secret (the axis configured but unreachable, so that its failures are
logged). The test then does what users and attackers do: documents sent, fetched
and acknowledged; wrong, foreign and truncated tokens; SDK calls with a good and a
bad signature; the console logged in and browsed; /metrics, /readyz,
/openapi.yaml; `docbroker config show`. Every byte that came back (bodies and
headers), the daemon's whole log and the CLI's output are searched for each secret
and for every stretch of 12 characters of it (a secret cut short is still a leak).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from broker.keys.devpki import key_pem
from broker.keys.files import ADMIN_TOKENS, SDK_MASTER_KEY, new_admin_token, write_private
from tests import pki
from tests.e2e.conftest import DaemonFactory
from tests.e2e.daemon import free_port
from tests.edxml_samples import full_document
from tests.sdk_client import SdkClient

pytestmark = [pytest.mark.e2e]

SENDER = "000.00.00.H35"
RECIPIENT = "000.00.01.H35"  # a recipient of full_document (H35.S01)
SYSTEM_AGENCY = "000.00.02.H35"
PASSPHRASE = "pass-" + secrets.token_hex(16)
AXIS_SECRET = "axis-" + secrets.token_hex(16)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
CONSOLE_PAGES = ("/console/", "/console/agencies", "/console/documents", "/console/dead-letters")


@pytest.fixture
def backend() -> str:
    return "embedded"


@pytest.fixture
def daemon_env(daemon_env: dict[str, str]) -> dict[str, str]:
    keys = Path(daemon_env["DOCBROKER_DATA_DIR"]) / "keys"
    write_private(keys / "broker.key.pem", key_pem(pki.broker().key, PASSPHRASE.encode()))
    write_private(keys / "axis.secret", AXIS_SECRET.encode() + b"\n")
    return {
        **daemon_env,
        "DOCBROKER_KEY_PASSPHRASE": PASSPHRASE,
        "DOCBROKER_NATIONAL_AXIS_ENABLED": "true",
        "DOCBROKER_NATIONAL_AXIS_BASE_URL": f"http://127.0.0.1:{free_port()}/XrdAdapter",
        "DOCBROKER_NATIONAL_AXIS_SYSTEM_ID": "000.99.99.H35",
        "DOCBROKER_NATIONAL_AXIS_POLL_INTERVAL": "0.2",
        "DOCBROKER_NATIONAL_AXIS_RETRY_BASE": "0.1",
    }


def cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "broker", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout + proc.stderr


def stretches(secret: str, width: int = 12) -> list[str]:
    """Every `width` characters of the secret's random part (a token's part after its
    `dbk_<id>_` prefix, which names it and may be logged): a secret shown cut short,
    from either end, is still a leak."""
    part = secret.split("_", 2)[2] if secret.startswith("dbk_") else secret
    return [part[i : i + width] for i in range(len(part) - width + 1)]


class Seen:
    """Every answer the test received: status, headers and body."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.statuses: list[int] = []
        self.by_path: dict[str, int] = {}

    async def record(self, resp: aiohttp.ClientResponse) -> str:
        body = (await resp.read()).decode(errors="replace")
        self.statuses.append(resp.status)
        self.by_path[resp.url.path] = resp.status
        self.texts.append(f"{resp.status} {resp.url}\n{dict(resp.headers)}\n{body}")
        return body


async def exercise(url: str, tokens: dict[str, str], system: tuple[str, str], seen: Seen) -> None:
    agency, admin = tokens["agency"], tokens["admin"]
    bearer = {"Authorization": f"Bearer {agency}"}
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:

        async def call(method: str, path: str, **kw: object) -> str:
            async with http.request(method, url + path, **kw) as resp:  # type: ignore[arg-type]
                return await seen.record(resp)

        # Documents sent, listed, fetched, acknowledged (the recipient's own token).
        answer = json.loads(
            await call(
                "POST",
                "/v1/envelopes",
                data=full_document(),
                headers={**bearer, "Content-Type": "application/xml"},
            )
        )
        assert "message_id" in answer, answer
        # Refusals: a wrong token, a truncated one, a foreign mailbox, a bad request.
        for token in (agency[:-4] + "AAAA", agency[: len(agency) // 2], admin[:-2] + "xx"):
            wrong = {"Authorization": f"Bearer {token}"}
            await call("GET", f"/v1/mailboxes/{SENDER}/envelopes", headers=wrong)
        await call("GET", f"/v1/mailboxes/{RECIPIENT}/envelopes?wait=0", headers=bearer)
        await call("GET", "/v1/documents?limit=-1", headers=bearer)
        await call("POST", "/v1/envelopes", data=b"<not-edxml/>", headers=bearer)
        await call("GET", "/v1/documents", headers={"Authorization": f"Bearer {admin}"})
        # The SDK surface: a good signature, then the same call with a wrong secret.
        system_id, secret = system
        good = SdkClient(http, url + "/vdxp", system_id, secret, ssl=False)
        status, _ = await good.received()
        assert status == 200
        bad = SdkClient(http, url + "/vdxp", system_id, secret[::-1], ssl=False)
        status, _ = await bad.received()
        assert status in (401, 403)
        # The console: a failed login, a good one, its pages.
        for token in (admin[:-3] + "zzz", admin):
            page = await call("GET", "/console/login")
            found = CSRF.search(page)
            assert found, page
            await call(
                "POST",
                "/console/login",
                data={"csrf": found.group(1), "token": token, "next": "/console/"},
            )
        for path in CONSOLE_PAGES:
            await call("GET", path)
        for path in ("/metrics", "/readyz", "/healthz", "/openapi.yaml"):
            await call("GET", path)


@pytest.mark.timeout(180)
def test_no_secret_appears_in_logs_metrics_console_or_answers(
    daemons: DaemonFactory, daemon_env: dict[str, str]
) -> None:
    keys = Path(daemon_env["DOCBROKER_DATA_DIR"]) / "keys"
    admin = new_admin_token(keys / ADMIN_TOKENS)
    daemon = daemons("leaks")
    agency = daemon.client_for(SENDER).token or ""
    plain_from_here = ("--plain-http", "--network", "127.0.0.1/32")
    created = cli(
        daemon_env, "agencies", "system", "create", SYSTEM_AGENCY, "--json", *plain_from_here
    )
    made = json.loads(created)
    system = (made["systemid"], made["secret"])
    seen = Seen()
    asyncio.run(exercise(daemon.url, {"agency": agency, "admin": admin}, system, seen))
    shown = cli(daemon_env, "config", "show") + cli(daemon_env, "config", "show", "--json")
    daemon.stop()

    assert 401 in seen.statuses and 403 in seen.statuses, seen.statuses
    assert all(seen.by_path[p] == 200 for p in CONSOLE_PAGES), seen.by_path
    logs = daemon.logs()
    events = {e["event"] for e in daemon.log_events()}
    assert "national axis poll failed; trying again" in events, "the axis's failures are logged"
    assert {"access refused", "console: refused", "sdk operation refused"} <= events
    held = {
        "key passphrase": PASSPHRASE,
        "SDK master key": (keys / SDK_MASTER_KEY).read_text().strip(),
        "SDK system secret": system[1],
        "agency token": agency,
        "admin token": admin,
        "axis secret": AXIS_SECRET,
    }
    places = {"daemon log": logs, "answers": "\n".join(seen.texts), "config show": shown}
    leaks = [
        f"{name} in {place}"
        for name, secret in held.items()
        for place, text in places.items()
        if any(s in text for s in stretches(secret))
    ]
    print(
        f"\nno secret leaks: {len(seen.texts)} answers ({len(set(seen.statuses))} statuses), "
        f"{len(logs.splitlines())} log lines, {len(held)} secrets, leaks {leaks}"
    )
    assert leaks == []
