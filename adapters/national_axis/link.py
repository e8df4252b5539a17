"""The province's link to the national axis: the upstream sender, the downstream
receiver and the directory sync, started after the runtime and stopped before it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

from adapters.national_axis.client import AxisClient
from adapters.national_axis.delivery import check_deliveries
from adapters.national_axis.directory_sync import sync_directory
from adapters.national_axis.protocol import AxisError
from adapters.national_axis.receiver import AxisReceiver
from adapters.national_axis.sender import UpstreamSender
from broker.config import Settings
from broker.core.errors import ConfigError, DocbrokerError
from broker.keys.secrets import read_secret
from broker.runtime import Runtime

log = structlog.get_logger(__name__)

SECRET_ENV = "DOCBROKER_AXIS_SECRET"  # noqa: S105 - the variable's name
SECRET_FILE = "axis.secret"  # noqa: S105 - a file name


def axis_secret(settings: Settings) -> str:
    """The shared secret: from DOCBROKER_AXIS_SECRET, else national_axis.secret_file
    (which others may not read: `read_secret`)."""
    path = settings.key_file(settings.national_axis.secret_file, SECRET_FILE)
    secret = read_secret("the national axis's shared secret", env=SECRET_ENV)
    if secret is None:
        if not path.exists():
            raise ConfigError(
                f"national_axis: no shared secret: set {SECRET_ENV} or put it in {path}"
            )
        secret = read_secret("the national axis's shared secret", file=path)
    assert secret is not None
    return secret.decode()


class AxisLink:
    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        axis = settings.national_axis
        self.runtime = runtime
        self.settings = axis
        self.client = AxisClient(
            axis.base_url,
            axis.system_id,
            axis_secret(settings),
            timeout=axis.request_timeout,
            ca_file=axis.ca_file,
        )
        self.sender = UpstreamSender(
            runtime.log,
            runtime.topics,
            self.client,
            axis,
            runtime.metrics,
            group=f"{settings.backend.topic_prefix}axis-sender",
        )
        self.receiver = AxisReceiver(runtime, self.client, axis) if axis.receive else None
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """The directory first (so that senders from outside are known when their
        packages come down), then sending and receiving."""
        await self.sender.start()
        interval = self.settings.directory_sync_interval
        if interval > 0:
            await self._sync_once()
            self._every(interval, self._sync_once, "axis-directory-sync")
        if self.settings.delivery_check_interval > 0:
            self._every(self.settings.delivery_check_interval, self._check_once, "axis-deliveries")
        if self.receiver is not None:
            await self.receiver.start()
        log.info(
            "national axis link started",
            axis=self.settings.base_url,
            system_id=self.settings.system_id,
            receive=self.receiver is not None,
        )

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks)
        if self.receiver is not None:
            await self.receiver.stop()
        await self.sender.stop()
        await self.client.close()

    async def _sync_once(self) -> None:
        try:
            await sync_directory(self.client, self.runtime.log, self.runtime.topics.directory)
            await self.runtime.directory.follower.caught_up()
        except AxisError as exc:
            self.runtime.metrics.axis_failed("getAgenciesList", exc.code)
            log.warning("directory sync with the national axis failed", error=str(exc))
        except DocbrokerError as exc:
            log.warning("directory sync could not be written", error=str(exc))

    async def _check_once(self) -> None:
        try:
            await check_deliveries(self.client, self.runtime)
        except AxisError as exc:
            self.runtime.metrics.axis_failed("getSentEdocList", exc.code)
            log.warning("delivery check with the national axis failed", error=str(exc))
        except DocbrokerError as exc:
            log.warning("delivery check could not be recorded", error=str(exc))

    def _every(self, seconds: float, job: Callable[[], Awaitable[None]], name: str) -> None:
        """Run `job` every `seconds` until the link stops (its errors are its own)."""

        async def loop() -> None:
            while not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(seconds):
                        await self._stopping.wait()
                if not self._stopping.is_set():
                    await job()

        self._tasks.append(asyncio.create_task(loop(), name=name))


@contextlib.asynccontextmanager
async def axis_link(runtime: Runtime) -> AsyncIterator[None]:
    """The link's lifetime inside the daemon's (a cleanup context)."""
    link = AxisLink(runtime)
    await link.start()
    runtime.events.append("axis link started")
    try:
        yield
    finally:
        await link.stop()
        runtime.events.append("axis link stopped")
