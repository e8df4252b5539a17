"""The downstream receiver: documents and statuses for this province come down from the
national axis.

Every `national_axis.poll_interval` seconds, for `edoc` then `status`:
getReceivedEdocList → getEdoc → the door (validation; a package is appended to
`inbound` with its axis docId, durably) → updateStatus done. The axis lists a
package until it hears `done`, so a crash before that makes it list it again;
the docId is then found (this process remembers what it appended, and the
pipeline's dedup index what any instance took), so it is confirmed, not taken
again, and the pipeline takes each docId once whatever happens. A package the
door refuses is recorded (audit trail, `rejected`) and confirmed too: asking
again would not change the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

import structlog

from adapters.national_axis.client import MESSAGE_TYPES, AxisClient
from adapters.national_axis.protocol import AxisError
from broker.config import NationalAxisSettings
from broker.core.errors import DocbrokerError
from broker.pipeline.intake import AXIS_DEDUP_SENDER, SOURCE_AXIS
from broker.runtime import Runtime
from broker.service.door import take_in

log = structlog.get_logger(__name__)

REMEMBERED = 100_000  # docIds appended by this process, kept to confirm them without a refetch


class AxisReceiver:
    def __init__(
        self, runtime: Runtime, client: AxisClient, settings: NationalAxisSettings
    ) -> None:
        self.runtime = runtime
        self.client = client
        self.settings = settings
        self._appended: OrderedDict[str, None] = OrderedDict()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.running = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="axis-receiver")
        self.running = True

    async def stop(self) -> None:
        """The package in hand is finished (appended and confirmed) first."""
        self._stopping.set()
        if self._task is not None:
            await self._task
        self.running = False

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.poll_once()
            except AxisError as exc:
                log.warning("national axis poll failed; trying again", error=str(exc))
            except DocbrokerError as exc:
                log.warning("could not take packages in; trying again", error=str(exc))
            except Exception:
                log.exception("national axis poll failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_interval):
                    await self._stopping.wait()

    async def poll_once(self) -> int:
        """One round over both message types; returns how many packages were appended."""
        taken = 0
        for messagetype in MESSAGE_TYPES:
            try:
                entries = await self.client.received(messagetype)
            except AxisError as exc:
                self.runtime.metrics.axis_failed("getReceivedEdocList", exc.code)
                raise
            seen: set[str] = set()
            for entry in entries:
                doc_id = str(entry.get("docId") or "")
                if not doc_id or doc_id in seen:
                    continue  # one package for several recipients here: taken once
                seen.add(doc_id)
                if self._stopping.is_set():
                    return taken
                taken += await self._take(doc_id, messagetype)
        return taken

    def _known(self, doc_id: str) -> bool:
        return doc_id in self._appended or (
            self.runtime.dedup.lookup(AXIS_DEDUP_SENDER, doc_id) is not None
        )

    async def _take(self, doc_id: str, messagetype: str) -> int:
        metrics = self.runtime.metrics
        appended = 0
        if self._known(doc_id):
            outcome = "already-taken"
        else:
            try:
                data = await self.client.get_edoc(doc_id)
            except AxisError as exc:
                metrics.axis_failed("getEdoc", exc.code)
                raise
            result = await take_in(
                self.runtime, data, source=SOURCE_AXIS, caller=None, axis_doc_id=doc_id
            )
            self._remember(doc_id)
            outcome = "refused" if result.refused else "duplicate" if result.duplicate else "taken"
            appended = int(outcome == "taken")
            log.info(
                "package taken from the national axis",
                axis_doc_id=doc_id,
                message_id=result.message_id,
                outcome=outcome,
                codes=[p.code for p in result.problems],
            )
        try:
            await self.client.update_status(doc_id, "done")
        except AxisError as exc:
            metrics.axis_failed("updateStatus", exc.code)
            raise
        metrics.axis_received(messagetype, outcome)
        return appended

    def _remember(self, doc_id: str) -> None:
        self._appended[doc_id] = None
        while len(self._appended) > REMEMBERED:
            self._appended.popitem(last=False)
