"""The running broker's parts, built once from settings, started and stopped in order.

`Runtime.build` makes every component without I/O. `lifecycle()` gives the
start/stop steps in dependency order (log -> mailbox view -> pipeline); the
HTTP app registers them as cleanup contexts so that aiohttp starts them before
serving and stops them in reverse after the last request.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import structlog

from broker.config import Settings
from broker.edxml.rules import Limits
from broker.edxml.validator import EnvelopeValidator
from broker.errors import DocbrokerError
from broker.log import DurableLog, open_log
from broker.mailbox import MailboxView
from broker.metrics import Metrics
from broker.pipeline import Pipeline
from broker.processing import InboundProcessor
from broker.topics import Topics, topic_specs
from broker.trust.certs import seconds_left, subject_text
from broker.trust.context import TrustContext, load_trust

log = structlog.get_logger(__name__)


def envelope_limits(settings: Settings) -> Limits:
    lim = settings.limits
    return Limits(
        max_bytes=int(lim.max_envelope_bytes),
        max_depth=lim.max_depth,
        max_elements=lim.max_elements,
        max_recipients=lim.max_recipients,
        max_attachments=lim.max_attachments,
    )


@dataclass
class Runtime:
    settings: Settings
    topics: Topics
    metrics: Metrics
    log: DurableLog
    processor: InboundProcessor
    view: MailboxView
    pipeline: Pipeline
    trust: TrustContext
    events: list[str] = field(default_factory=list)  # start/stop order, for tests and logs

    @classmethod
    def build(cls, settings: Settings, *, metrics: Metrics | None = None) -> Runtime:
        topics = Topics.with_prefix(settings.backend.topic_prefix)
        metrics = metrics or Metrics()
        durable = open_log(settings)
        validator = EnvelopeValidator(envelope_limits(settings))
        trust = load_trust(settings)  # keys are loaded once, here
        processor = InboundProcessor(topics, validator, trust)
        view = MailboxView(durable, topics, settings.data_path / "mailbox.sqlite", metrics)
        pipeline = Pipeline(
            durable,
            processor,
            metrics,
            group=f"{settings.backend.topic_prefix}{settings.pipeline.group}",
            batch_size=settings.pipeline.batch_size,
        )
        return cls(settings, topics, metrics, durable, processor, view, pipeline, trust)

    # -- lifecycle

    def lifecycle(self) -> list[Callable[[], AbstractAsyncContextManager[None]]]:
        """Start/stop steps in dependency order; stop runs in reverse."""
        return [
            self._certificate_watch,
            self._worker_pool,
            self._durable_log,
            self._mailbox_view,
            self._pipeline,
        ]

    @asynccontextmanager
    async def _certificate_watch(self) -> AsyncIterator[None]:
        """Report certificates close to expiry at start and every six hours."""

        async def watch() -> None:
            while True:
                self.report_certificates()
                await asyncio.sleep(6 * 3600)

        task = asyncio.create_task(watch(), name="certificate-watch")
        yield
        task.cancel()

    def report_certificates(self) -> None:
        for role, cert in self.trust.certificates():
            self.metrics.certificate_expiry(role, subject_text(cert), seconds_left(cert))
        for role, cert in self.trust.expiring():
            log.warning(
                "certificate expires soon",
                role=role,
                subject=subject_text(cert),
                not_after=cert.not_valid_after_utc.isoformat(),
            )

    @asynccontextmanager
    async def _worker_pool(self) -> AsyncIterator[None]:
        workers = self.settings.pipeline.workers or os.cpu_count() or 2
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docbroker-work")
        asyncio.get_running_loop().set_default_executor(pool)  # what asyncio.to_thread uses
        yield
        pool.shutdown(wait=True)

    @asynccontextmanager
    async def _durable_log(self) -> AsyncIterator[None]:
        await self.log.start()
        try:
            await self.log.ensure_topics(topic_specs(self.settings, self.topics))
        except BaseException:
            await self.log.close()
            raise
        self._note("log started", backend=self.log.name)
        self.metrics.started(backend=self.log.name, instance=self.settings.instance_name)
        yield
        await self.log.close()
        self._note("log closed")

    @asynccontextmanager
    async def _mailbox_view(self) -> AsyncIterator[None]:
        await self.view.start()
        self._note("mailbox view started")
        yield
        await self.view.stop()
        self._note("mailbox view stopped")

    @asynccontextmanager
    async def _pipeline(self) -> AsyncIterator[None]:
        await self.pipeline.start()
        self._note("pipeline started", group=self.pipeline.group)
        yield
        await self.pipeline.stop()
        self._note("pipeline stopped")

    def _note(self, what: str, **kw: object) -> None:
        self.events.append(what)
        log.info(what, **kw)

    # -- readiness

    async def readiness(self) -> dict[str, str]:
        """Each check's verdict: "ok" or why not."""
        checks: dict[str, str] = {}
        try:
            await self.log.ping()
            checks["log"] = "ok"
        except DocbrokerError as exc:
            checks["log"] = str(exc)
        key_problems = self.trust.problems_now()
        checks["keys"] = "; ".join(key_problems) if key_problems else "ok"
        checks["mailbox_view"] = "ok" if self.view.ready else "not started"
        checks["pipeline"] = "ok" if self.pipeline.running else "not running"
        self.metrics.readiness(all(v == "ok" for v in checks.values()))
        return checks
