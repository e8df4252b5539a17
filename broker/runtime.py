"""The running broker's parts, built once from settings, started and stopped in order.

`Runtime.build` makes every component without I/O. `lifecycle()` gives the
start/stop steps in dependency order (log -> mailbox view -> pipeline); the
HTTP app registers them as cleanup contexts so that aiohttp starts them before
serving and stops them in reverse after the last request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from broker.clock import utc_now
from broker.config import Settings
from broker.core.errors import ConfigError, DocbrokerError
from broker.core.topics import Topics
from broker.directory.io import check_unique, parse_file
from broker.keys import revocation_watch
from broker.keys.secrets import read_secret
from broker.log import DurableLog, open_log
from broker.log.topics import topic_specs
from broker.metrics import Metrics
from broker.pipeline.build import build_processor
from broker.pipeline.processing import InboundProcessor
from broker.pipeline.runner import Pipeline
from broker.retention.pruner import Pruner
from broker.state.dedup import DedupIndex
from broker.state.directory import DirectoryState, put_agencies
from broker.state.heads import ChainHeads
from broker.trust.certs import seconds_left, subject_text
from broker.trust.context import TrustContext
from broker.views.documents import DocumentsView
from broker.views.mailbox import MailboxView
from broker.views.sizes import INTERVAL as SIZES_INTERVAL
from broker.views.sizes import Sizes, measure
from broker.views.statistics import StatisticsView

log = structlog.get_logger(__name__)


def process_count(settings: Settings) -> int:
    configured = settings.pipeline.processes
    if configured >= 0:
        return configured
    cpus = os.cpu_count() or 1
    return cpus if cpus > 1 else 0


# The default executor of each event loop a runtime runs on, and how many runtimes use it.
_LOOP_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Any]] = (
    weakref.WeakKeyDictionary()
)


def mailbox_view(
    durable: DurableLog,
    topics: Topics,
    settings: Settings,
    metrics: Metrics,
    directory: DirectoryState,
) -> MailboxView:
    """The mailbox read model; its per-agency gauges are bounded by the directory."""
    return MailboxView(
        durable,
        topics,
        settings.data_path / "mailbox.sqlite",
        metrics,
        directory=lambda: directory.current,
    )


def statistics_view(
    durable: DurableLog, topics: Topics, settings: Settings, directory: DirectoryState
) -> StatisticsView:
    """The statistics read model in the data folder (`docbroker report` reads it too)."""
    return StatisticsView(
        durable,
        topics,
        settings.data_path / "statistics.sqlite",
        lambda: directory.current,
        zone=settings.reports.timezone,
    )


def documents_view(
    durable: DurableLog,
    topics: Topics,
    settings: Settings,
    metrics: Metrics,
    directory: DirectoryState,
) -> DocumentsView:
    """The document view in the data folder (`docbroker documents find` reads it too)."""
    return DocumentsView(
        durable,
        topics,
        settings.data_path / "documents.sqlite",
        metrics,
        resolve=lambda code: (a := directory.current.find(code)) and a.code,
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
    directory: DirectoryState
    heads: ChainHeads
    dedup: DedupIndex
    documents: DocumentsView
    pruner: Pruner
    statistics: StatisticsView
    events: list[str] = field(default_factory=list)  # start/stop order, for tests and logs

    @classmethod
    def build(cls, settings: Settings, *, metrics: Metrics | None = None) -> Runtime:
        topics = Topics.with_prefix(settings.backend.topic_prefix)
        metrics = metrics or Metrics()
        durable = open_log(settings, read_secret)
        processor = build_processor(settings)
        trust = processor.trust  # keys are loaded once, here
        directory = DirectoryState(durable, topics.directory)
        view = mailbox_view(durable, topics, settings, metrics, directory)
        heads = ChainHeads(durable, topics.chains)
        dedup = DedupIndex(
            durable, topics.dedup, processor.dedup_window_ms, settings.data_path / "dedup.sqlite"
        )
        pipeline = Pipeline(
            durable,
            processor,
            metrics,
            directory=directory,
            heads=heads,
            dedup=dedup,
            group=f"{settings.backend.topic_prefix}{settings.pipeline.group}",
            batch_size=settings.pipeline.batch_size,
            batch_bytes=settings.pipeline.batch_bytes,
            processes=process_count(settings),
            settings=settings,
        )
        documents = documents_view(durable, topics, settings, metrics, directory)
        statistics = statistics_view(durable, topics, settings, directory)
        pruner = Pruner(
            durable,
            topics,
            view,
            settings.retention,
            metrics,
            pipeline_group=pipeline.group,
            upstream_group=f"{settings.backend.topic_prefix}axis-sender",
        )
        return cls(
            settings,
            topics,
            metrics,
            durable,
            processor,
            view,
            pipeline,
            trust,
            directory,
            heads,
            dedup,
            documents,
            pruner,
            statistics,
        )

    # -- lifecycle

    def lifecycle(self) -> list[Callable[[], AbstractAsyncContextManager[None]]]:
        """Start/stop steps in dependency order; stop runs in reverse."""
        return [
            self._certificate_watch,
            self._worker_pool,
            self._revocation_watch,
            self._durable_log,
            self._followed_state,
            self._mailbox_view,
            self._documents_view,
            self._statistics_view,
            self._size_watch,
            self._retention,
            self._pipeline,
        ]

    @asynccontextmanager
    async def _followed_state(self) -> AsyncIterator[None]:
        """The directory, the chain heads and the dedup index, read and then followed."""
        followers = [self.directory.follower, self.heads.follower, self.dedup.follower]
        for follower in followers:
            await follower.start()
        await self._seed_directory()
        self._note(
            "state loaded",
            agencies=len(self.directory.current),
            chains=len(self.heads.heads),
            dedup=await asyncio.to_thread(self.dedup.count),
        )
        yield
        for follower in reversed(followers):
            await follower.stop()
        self.dedup.close()
        self._note("state closed")

    async def _seed_directory(self) -> None:
        seed = self.settings.directory.seed_file
        if not seed or len(self.directory.current):
            return
        try:
            text = await asyncio.to_thread(Path(seed).read_text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"directory.seed_file {seed}: {exc.strerror}") from None
        agencies, problems = parse_file(seed, text)
        problems += check_unique(agencies)
        if problems:
            raise ConfigError(f"directory.seed_file {seed}: " + "; ".join(map(str, problems[:5])))
        await put_agencies(self.log, self.topics.directory, agencies, actor="seed")
        await self.directory.follower.caught_up()
        log.info("directory seeded", file=seed, agencies=len(agencies))

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
        now = utc_now()
        for role, cert in self.trust.certificates():
            self.metrics.certificate_expiry(role, subject_text(cert), seconds_left(cert, now))
        for role, cert in self.trust.expiring(now):
            log.warning(
                "certificate expires soon",
                role=role,
                subject=subject_text(cert),
                not_after=cert.not_valid_after_utc.isoformat(),
            )

    @asynccontextmanager
    async def _revocation_watch(self) -> AsyncIterator[None]:
        """The CRL files looked at every few seconds: read again when changed, reported
        (broker.keys.revocation_watch)."""
        crls = revocation_watch.crl_files_of(self.trust.store)
        if crls is None:
            yield
            return
        revocation_watch.report(crls, self.metrics, utc_now())
        task = asyncio.create_task(revocation_watch.watch(crls, self.metrics), name="crl-watch")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    @asynccontextmanager
    async def _worker_pool(self) -> AsyncIterator[None]:
        """The thread pool asyncio.to_thread uses, sized by pipeline.workers; shared by
        the runtimes of one event loop (tests run two instances in one process) and
        shut down with the last of them."""
        loop = asyncio.get_running_loop()
        shared = _LOOP_POOLS.get(loop)
        if shared is None:
            workers = self.settings.pipeline.workers or os.cpu_count() or 2
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docbroker-work")
            loop.set_default_executor(pool)
            shared = _LOOP_POOLS[loop] = [pool, 0]
        shared[1] += 1
        try:
            yield
        finally:
            shared[1] -= 1
            if shared[1] == 0:
                del _LOOP_POOLS[loop]
                shared[0].shutdown(wait=True)

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
    async def _documents_view(self) -> AsyncIterator[None]:
        await self.documents.start()
        self._note("documents view started")
        yield
        await self.documents.stop()
        self._note("documents view stopped")

    @asynccontextmanager
    async def _statistics_view(self) -> AsyncIterator[None]:
        await self.statistics.start()
        self._note("statistics view started")
        yield
        await self.statistics.stop()
        self._note("statistics view stopped")

    @asynccontextmanager
    async def _size_watch(self) -> AsyncIterator[None]:
        """The log's and the read models' sizes in the metrics, each minute."""
        log_file = self.settings.embedded_path if self.settings.backend.type == "embedded" else None

        async def watch() -> None:
            while True:
                try:
                    sizes = await measure(self.log, self.topics, self.settings.data_path, log_file)
                except DocbrokerError as exc:
                    log.debug("sizes not measured", error=str(exc))
                else:
                    self._report_sizes(sizes)
                await asyncio.sleep(SIZES_INTERVAL)

        task = asyncio.create_task(watch(), name="size-watch")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _report_sizes(self, sizes: Sizes) -> None:
        for topic, size in sizes.topics.items():
            records = size.records if size else sizes.records_written.get(topic, 0)
            self.metrics.topic_size(topic, records, size.bytes if size else None)
        if sizes.log_file_bytes is not None:
            self.metrics.log_file_size(sizes.log_file_bytes)
        for view, size in sizes.read_models.items():
            if size is not None:
                self.metrics.read_model_size(view, size)
        if sizes.data_free_bytes is not None and sizes.data_capacity_bytes is not None:
            self.metrics.data_space(sizes.data_free_bytes, sizes.data_capacity_bytes)

    @asynccontextmanager
    async def _retention(self) -> AsyncIterator[None]:
        await self.pruner.start()
        self._note("retention started", enabled=self.settings.retention.enabled)
        yield
        await self.pruner.stop()
        self._note("retention stopped")

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
        key_problems = self.trust.problems_now(utc_now())
        checks["keys"] = "; ".join(key_problems) if key_problems else "ok"
        checks["revocation"] = revocation_watch.readiness(self.trust.store, utc_now())
        checks["directory"] = (
            f"ok ({len(self.directory.current)} agencies)"
            if self.directory.follower.loaded
            else "not loaded"
        )
        checks["mailbox_view"] = self.view.health()
        checks["documents_view"] = self.documents.health()
        checks["statistics_view"] = self.statistics.health()
        checks["pipeline"] = self.pipeline.health()
        self.metrics.readiness(all(v.startswith("ok") for v in checks.values()))
        return checks
