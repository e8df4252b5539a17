"""Shared fixtures: the real Kafka broker and cluster (session), backends, unique topic
names."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import re
import time
import uuid
from asyncio.base_events import _format_handle  # the text asyncio's debug mode logs
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from broker.log.interface import DurableLog
from tests.kafka_broker import (
    KafkaBroker,
    KafkaCluster,
    start_broker,
    start_cluster,
    stop_broker,
    stop_cluster,
)
from tests.kafka_secure import SecureKafka

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
# Three levels (province, districts, communes): the structure before the 2025 reform.
EXAMPLE_DIRECTORY_2024 = ROOT / "config" / "directory" / "lai-chau-2024.toml"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A real single-node Kafka (KRaft) for the whole session; never a mock."""
    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    yield broker
    stop_broker(broker)


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A real 3-node Kafka cluster (KRaft, each node broker and controller) for the
    session, started only when a test marked `kafka_cluster` runs; stopped at the end."""
    cluster = start_cluster(tmp_path_factory.mktemp("kafka-cluster"))
    yield cluster
    stop_cluster(cluster)


@pytest.fixture(scope="session")
def kafka_secure(kafka_broker: KafkaBroker) -> SecureKafka:
    """The suite's broker's SASL_SSL and mTLS listeners, User:docbroker given the
    README's ACLs (once a session)."""
    secure = SecureKafka.of(kafka_broker)
    if secure is None:
        pytest.skip("an external Kafka (DOCBROKER_TEST_KAFKA_BOOTSTRAP): no secure listeners")
    secure.add_readme_acls()
    return secure


# Topics the tests create on the cluster: replicated as in production.
CLUSTER_REPLICATION = {"replication_factor": 3, "min_insync_replicas": 2}


@pytest.fixture
def unique_prefix(request: pytest.FixtureRequest) -> str:
    """Topic names carry the test's name, so tests never see each other's data."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[-60:].strip("-")
    return f"t.{name}.{uuid.uuid4().hex[:8]}."


LogFactory = Callable[..., Awaitable[DurableLog]]


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def kafka_bootstrap(backend: str, request: pytest.FixtureRequest) -> str | None:
    """The suite's Kafka for the `kafka` parameter (or its cluster, every node running
    and in sync, for `kafka-cluster`), started here, outside any event loop."""
    if backend == "kafka-cluster":
        cluster: KafkaCluster = request.getfixturevalue("kafka_cluster")
        cluster.heal()  # a test that failed half-way may have left a node down
        cluster.wait_in_sync()
        return cluster.bootstrap
    if backend != "kafka":
        return None
    broker: KafkaBroker = request.getfixturevalue("kafka_broker")
    return broker.bootstrap


@pytest.fixture
def kafka_security() -> dict[str, str]:
    """KafkaSettings fields of the Kafka backend's security: none (PLAINTEXT), but in
    the conformance suite (tests/conformance/conftest.py: SASL_SSL)."""
    return {}


@pytest.fixture
async def make_log(
    backend: str, tmp_path: Path, kafka_bootstrap: str | None, kafka_security: dict[str, str]
) -> AsyncIterator[LogFactory]:
    """Start logs of the parametrised backend; every one is closed at teardown."""
    opened: list[DurableLog] = []

    async def factory(
        *,
        max_record_bytes: int = 1024 * 1024,
        session_timeout: float = 3.0,
        path: Path | None = None,
    ) -> DurableLog:
        log = new_log(
            backend,
            kafka_bootstrap,
            tmp_path,
            max_record_bytes=max_record_bytes,
            session_timeout=session_timeout,
            path=path,
            security=kafka_security,
        )
        await log.start()
        opened.append(log)
        return log

    yield factory
    for log in reversed(opened):
        await log.close()


def new_log(
    backend: str,
    kafka_bootstrap: str | None,
    tmp_path: Path,
    *,
    max_record_bytes: int,
    session_timeout: float,
    path: Path | None = None,
    security: dict[str, str] | None = None,
) -> DurableLog:
    if backend.startswith("kafka"):
        from broker.config import KafkaSettings
        from broker.keys.secrets import read_secret
        from broker.log.kafka import KafkaLog

        assert kafka_bootstrap is not None
        settings = KafkaSettings(
            **{
                "bootstrap_servers": kafka_bootstrap,
                "session_timeout_ms": int(session_timeout * 1000),
                **(CLUSTER_REPLICATION if backend == "kafka-cluster" else {}),
                **(security or {}),
            }
        )
        return KafkaLog(
            settings,
            max_record_bytes=max_record_bytes,
            instance=uuid.uuid4().hex,
            read_secret=read_secret,
        )
    from broker.log.embedded import EmbeddedLog

    return EmbeddedLog(path or tmp_path / "log.sqlite", session_timeout=session_timeout)


# A step of aiokafka's own tasks (its protocol is decoded in Python) may take longer on
# this 2-core machine while the suite's brokers and daemons share it: that is the
# library's cost, not a blocking call of ours. Ours must stay under 0.25 s.
LIBRARY_STEP_LIMIT = 1.0
LIBRARY_TASK = re.compile(
    r"^Executing <Task \S+ name='[^']*' coro=<(\S+ running at \S*/aiokafka/"
    # a fixture's set-up starts Kafka clients: aiokafka's bootstrap runs in its step
    r"|_wrap_async(gen)?_fixture\.\S+\.setup\(\) )"
)


SLOW_STEP = 0.25  # seconds: a step of ours longer than this fails the test


class _CollectorClock:
    """Seconds this process has spent in the garbage collector (gc.callbacks).

    A full collection of the suite's own process (pytest keeps every test's report and
    captured output) took 0.30–0.32 s late in a CI run and failed whichever step it
    fell in; that pause is the test runner's heap, not a blocking call of ours, so a
    step's time in the collector is not counted against it."""

    def __init__(self) -> None:
        self.total = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._began


COLLECTOR = _CollectorClock()
gc.callbacks.append(COLLECTOR)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Modules, fixtures and the collected tests live as long as the session: frozen
    out of the collector's reach, they no longer lengthen each full collection."""
    gc.freeze()


class _SlowCallbacks:
    """The slow steps seen, but a step of aiokafka's own tasks under its limit."""

    def __init__(self) -> None:
        self.slow: list[str] = []

    def note(self, message: str) -> None:
        took = re.search(r" took ([0-9.]+) seconds", message)
        if LIBRARY_TASK.match(message) and took and float(took.group(1)) < LIBRARY_STEP_LIMIT:
            return
        self.slow.append(message)


@contextlib.contextmanager
def slow_steps(loop: asyncio.AbstractEventLoop) -> Iterator[_SlowCallbacks]:
    """Time each callback of `loop` as asyncio's debug mode times it, but without debug
    mode (which also records a stack trace for every handle and task it creates: that
    made start-up steps pass the limit on a loaded machine by the cost of measuring
    alone); the time a step spent in the garbage collector is left out."""
    handler = _SlowCallbacks()
    run = asyncio.events.Handle._run

    def timed(handle: asyncio.Handle) -> None:
        if handle._loop is not loop:  # type: ignore[attr-defined]
            run(handle)
            return
        started, collecting = time.perf_counter(), COLLECTOR.total
        try:
            run(handle)
        finally:
            took = time.perf_counter() - started - (COLLECTOR.total - collecting)
            if took >= SLOW_STEP:
                handler.note(f"Executing {_format_handle(handle)} took {took:.3f} seconds")

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]
    try:
        yield handler
    finally:
        asyncio.events.Handle._run = run  # type: ignore[method-assign]


@pytest.fixture
async def no_blocking_loop() -> AsyncIterator[None]:
    """Fail the test when a callback blocks the event loop for over 0.25 s (a step of
    aiokafka's own tasks: 1 s) (aiokafka consumers stall when the loop is blocked
    during a rebalance)."""
    with slow_steps(asyncio.get_running_loop()) as handler:
        yield
    assert not handler.slow, "the event loop was blocked:\n" + "\n".join(handler.slow)


async def eventually(
    condition: Callable[[], object], timeout: float, interval: float = 0.05
) -> bool:
    """Whether `condition()` (awaited if it is a coroutine function) became true within
    `timeout` seconds, checked each `interval`, the event loop running meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)


def backend_env(
    backend: str, data_dir: Path, prefix: str, kafka_bootstrap: str | None
) -> dict[str, str]:
    """DOCBROKER_* settings for a daemon or runtime on the parametrised backend."""
    env = {
        "DOCBROKER_DATA_DIR": str(data_dir),
        "DOCBROKER_BACKEND_TYPE": "kafka" if backend.startswith("kafka") else backend,
        "DOCBROKER_BACKEND_TOPIC_PREFIX": prefix,
        "DOCBROKER_BACKEND_PARTITIONS": "3",
        "DOCBROKER_BACKEND_EMBEDDED_SESSION_TIMEOUT": "3",
        "DOCBROKER_DIRECTORY_SEED_FILE": str(EXAMPLE_DIRECTORY_2024),
    }
    if kafka_bootstrap is not None:
        env["DOCBROKER_BACKEND_KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
        env["DOCBROKER_BACKEND_KAFKA_SESSION_TIMEOUT_MS"] = "6000"
    if backend == "kafka-cluster":
        for name, value in CLUSTER_REPLICATION.items():
            env[f"DOCBROKER_BACKEND_KAFKA_{name.upper()}"] = str(value)
    return env
