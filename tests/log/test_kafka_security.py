"""Kafka security against the suite's real broker (bin/kafka-local --secure): mTLS as
User:docbroker; a refused login, a missing password, and each missing ACL (topic,
group, transactional id) named at start with the principal, the operation and the
resource; an ACL removed while the log runs is shown by its ping (/readyz) while it
lasts. User:limited has the README's ACLs for the prefix `limited.` only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broker.config import KafkaSettings
from broker.core.errors import BackendUnavailable, ConfigError
from broker.core.logrecords import NewRecord, TopicPartition, TopicSpec
from broker.keys.secrets import read_secret
from tests.conformance.test_log_conformance import first_batch, tail_all
from tests.kafka_secure import SecureKafka

pytestmark = pytest.mark.kafka
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def limited(kafka_secure: SecureKafka) -> SecureKafka:
    kafka_secure.add_readme_acls("User:limited", "limited.")
    return kafka_secure


def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def open_log() -> AsyncIterator[Any]:
    """Start a KafkaLog with these settings; closed at teardown."""
    from broker.log.kafka import KafkaLog

    opened: list[KafkaLog] = []

    async def start(fields: dict[str, Any]) -> KafkaLog:
        settings = KafkaSettings(**{"session_timeout_ms": 3000, **fields})
        log = KafkaLog(settings, max_record_bytes=MiB, instance=tag(), read_secret=read_secret)
        opened.append(log)
        await log.start()
        return log

    yield start
    for log in opened:
        await log.close()


def password_of(secure: SecureKafka, user: str) -> str:
    return Path(secure.users[user]["password_file"]).read_text().strip()


async def refused_append(log: Any, record: NewRecord) -> None:
    """Append until the brokers' authorizer has the ACL's removal (a moment)."""
    for _ in range(50):
        await log.append([record])
        await asyncio.sleep(0.1)


async def round_trip(log: Any, prefix: str) -> None:
    """Topics made, an append (and an atomic one), a group member's commit, read back."""
    src, dst = f"{prefix}in", f"{prefix}out"
    await log.ensure_topics([TopicSpec(src, 1, MiB), TopicSpec(dst, 1, MiB)])
    await log.append([NewRecord(src, b"a")])
    await log.append([NewRecord(src, b"b"), NewRecord(src, b"c")])
    tp = TopicPartition(src, 0)
    async with log.group_consumer(f"{prefix}g", [src]) as member:
        batch = await first_batch(member, tp, 10)
        await member.commit(tp, batch[-1].offset + 1, [NewRecord(dst, r.value) for r in batch])
    assert [r.value for r in await tail_all(log, dst, 3)] == [b"a", b"b", b"c"]


async def test_mtls_as_docbroker_with_the_readme_acls(
    kafka_secure: SecureKafka, open_log: Any
) -> None:
    log = await open_log(kafka_secure.mtls("docbroker"))
    await round_trip(log, f"docbroker.mtls-{tag()}.")


async def test_sasl_ssl_with_the_password_from_the_environment(
    kafka_secure: SecureKafka, open_log: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = password_of(kafka_secure, "docbroker")
    monkeypatch.setenv("DOCBROKER_KAFKA_PASSWORD", password)
    log = await open_log(kafka_secure.sasl("docbroker", sasl_password_file=""))
    await round_trip(log, f"docbroker.env-{tag()}.")


async def test_a_wrong_password_is_a_refused_login(
    kafka_secure: SecureKafka, open_log: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password-" + tag())
    wrong.chmod(0o600)
    with pytest.raises(BackendUnavailable) as info:
        await open_log(kafka_secure.sasl("docbroker", sasl_password_file=str(wrong)))
    message = str(info.value)
    assert "refused the login of User:docbroker (SASL_SSL, SCRAM-SHA-512)" in message
    assert "SaslAuthenticationFailed" in message
    assert wrong.read_text() not in message + caplog.text


async def test_no_password_is_a_config_error(kafka_secure: SecureKafka, open_log: Any) -> None:
    fields = kafka_secure.sasl("docbroker", sasl_password_file="", sasl_password_env="NO_SUCH_VAR")
    with pytest.raises(ConfigError, match="needs a password: set sasl_password_file, or the "):
        await open_log(fields)


async def test_no_client_certificate_on_the_mtls_listener_is_refused(
    kafka_secure: SecureKafka, open_log: Any
) -> None:
    fields = {**kafka_secure.mtls(), "ssl_certfile": "", "ssl_keyfile": ""}
    with pytest.raises(BackendUnavailable, match="Kafka"):
        await open_log(fields)


async def test_a_topic_outside_the_acls_is_named(limited: SecureKafka, open_log: Any) -> None:
    log = await open_log(limited.sasl("limited"))
    name = f"other.{tag()}.in"
    with pytest.raises(BackendUnavailable) as info:
        await log.ensure_topics([TopicSpec(name, 1, MiB)])
    assert str(info.value).startswith(
        f"Kafka refused User:limited Create on topic {name}: add the ACL (kafka-acls --add "
        f"--allow-principal User:limited --operation Create --topic {name}"
    )


async def test_a_group_outside_the_acls_is_named(limited: SecureKafka, open_log: Any) -> None:
    log = await open_log(limited.sasl("limited"))
    src = f"limited.{tag()}.in"
    await log.ensure_topics([TopicSpec(src, 1, MiB)])
    group = f"nogroup.{tag()}"
    with pytest.raises(BackendUnavailable) as info:
        async with log.group_consumer(group, [src]) as member:
            await member.poll(5.0, 10)
    assert f"Kafka refused User:limited Read on group {group}: add the ACL" in str(info.value)


async def test_a_transactional_id_outside_the_acls_is_named(
    limited: SecureKafka, open_log: Any
) -> None:
    log = await open_log(limited.sasl("limited", client_id="nolimits"))
    src = f"limited.{tag()}.in"
    await log.ensure_topics([TopicSpec(src, 1, MiB)])
    await log.append([NewRecord(src, b"one")])  # idempotent: no transactional id
    with pytest.raises(BackendUnavailable) as info:
        await log.append([NewRecord(src, b"a"), NewRecord(src, b"b")])
    assert (
        f"Kafka refused User:limited Write on transactional-id nolimits.append.{log.instance}"
        in str(info.value)
    )


async def test_an_acl_removed_while_running_is_named_by_the_ping(
    limited: SecureKafka, open_log: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import broker.log.kafka_security as security

    monkeypatch.setattr(security, "REFUSAL_WINDOW", 3.0)
    log = await open_log(limited.sasl("limited"))
    src = f"limited.{tag()}.in"
    await log.ensure_topics([TopicSpec(src, 1, MiB)])
    await log.append([NewRecord(src, b"before")])
    write = ["--allow-principal", "User:limited", "--operation", "Write"]
    pattern = ["--topic", "limited.", "--resource-pattern-type", "prefixed"]
    await asyncio.to_thread(limited.acls, "--remove", "--force", *write, *pattern)
    try:
        with pytest.raises(BackendUnavailable, match="Kafka refused User:limited Write on topic"):
            await refused_append(log, NewRecord(src, b"refused"))
        with pytest.raises(BackendUnavailable, match=f"refused User:limited Write on topic {src}"):
            await log.ping()
    finally:
        await asyncio.to_thread(limited.acls, "--add", *write, *pattern)
    for _ in range(50):
        try:
            await log.append([NewRecord(src, b"after")])
            break
        except BackendUnavailable:
            await asyncio.sleep(0.1)
    await asyncio.sleep(3.0)
    await log.ping()  # the refusal is no longer met: ready again
