"""API credentials for tests: tokens and SDK systems written to the directory topic,
exactly as `docbroker agencies token create` / `system create` write them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from broker.cli import one_off_instance
from broker.clock import now_ms
from broker.config import load_settings
from broker.core.topics import Topics
from broker.directory import credentials as creds
from broker.directory.auth import derive_secret, new_system, new_token
from broker.directory.book import Directory
from broker.directory.model import Agency
from broker.keys.files import SDK_MASTER_KEY, parse_sdk_master_key
from broker.log import DurableLog, open_log
from broker.log.topics import topic_specs
from broker.runtime import Runtime
from broker.state.directory import change_agencies


async def grant_tokens(
    log: DurableLog, topic: str, codes: Iterable[str], *, expires_days: float = 0
) -> dict[str, str]:
    """A new token for each agency (named by either code); code as given -> token."""
    tokens: dict[str, str] = {}

    def change(directory: Directory) -> list[Agency]:
        changed: dict[str, Agency] = {}
        for code in codes:
            found = directory.find(code)
            assert found is not None, f"{code} is not in the directory"
            agency = changed.get(found.code, found)
            tokens[code], token = new_token(now_ms=now_ms(), expires_days=expires_days)
            changed[found.code] = creds.add_token(agency, token)
        return list(changed.values())

    await change_agencies(log, topic, change, "tests")
    return tokens


async def runtime_tokens(runtime: Runtime, codes: Iterable[str]) -> dict[str, str]:
    """Tokens granted through a running runtime's log, visible to it on return."""
    tokens = await grant_tokens(runtime.log, runtime.topics.directory, codes)
    await runtime.directory.follower.caught_up()
    return tokens


async def runtime_system(
    runtime: Runtime, code: str, *, system_id: str | None = None, **flags: Any
) -> tuple[str, str]:
    """An SDK system for agency `code` (default id `sys-<code>`): (system id, secret);
    `flags` as broker.directory.auth.new_system takes them (plain_http, networks, ...)."""
    key_path = runtime.settings.key_file(runtime.settings.auth.sdk_master_key_file, SDK_MASTER_KEY)
    key = parse_sdk_master_key(key_path.read_text())
    made = []

    def change(directory: Directory) -> list[Agency]:
        agency = directory.find(code)
        assert agency is not None
        made.append(new_system(system_id or f"sys-{agency.code}", now_ms=now_ms(), **flags))
        return [creds.add_system(directory, agency, made[0])]

    await change_agencies(runtime.log, runtime.topics.directory, change, "tests")
    await runtime.directory.follower.caught_up()
    return made[0].system_id, derive_secret(key, made[0])


def daemon_tokens(env: Mapping[str, str], codes: Iterable[str]) -> dict[str, str]:
    """Tokens for agencies of a daemon's deployment (its settings from `env`), written
    before or while it runs; the daemon seeds its directory first if it is empty."""
    settings = one_off_instance(load_settings(None, dict(env)))
    topics = Topics.with_prefix(settings.backend.topic_prefix)

    async def main() -> dict[str, str]:
        log = open_log(settings)
        await log.start()
        try:
            await log.ensure_topics(topic_specs(settings, topics))
            return await grant_tokens(log, topics.directory, list(codes))
        finally:
            await log.close()

    return asyncio.run(main())
