#!/usr/bin/env python3
"""`docbroker report` over a province-year: the goal is the report in under 2 s.

Loads a year (2019) of a province's history shaped like the seed report: 1,366,349
documents, 1,195,019 inbound (received by the province's agencies: from one another
and, a third of them, from outside through the national axis) and 171,330 outbound
(sent to agencies outside the province through the axis), over the agencies of
config/directory/lai-chau-2024.toml (province, districts, communes); a status
(03/04/05/06) answering most documents, some never acknowledged, some refused. They
go into an embedded log as the events the pipeline writes (real `Event`s chained
with `link`; appended directly, without the pipeline's crypto, whose throughput is
bench_pipeline's). Then the statistics view catches up (its rate is printed), and
`docbroker report --period month` and `--json` are timed as subprocesses; the
report's totals must equal what was generated.

    .venv/bin/python bench/bench_report.py [--scale 1.0] [--quick] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.config import load_settings  # noqa: E402
from broker.core.events import ChainHead, Event, EventType, link  # noqa: E402
from broker.core.topics import Topics  # noqa: E402
from broker.directory.book import Directory  # noqa: E402
from broker.directory.io import parse_file  # noqa: E402
from broker.directory.model import Agency  # noqa: E402
from broker.log import open_log  # noqa: E402
from broker.log.topics import topic_specs  # noqa: E402
from broker.state.directory import put_agencies  # noqa: E402
from broker.views.report import level_of  # noqa: E402
from broker.views.statistics import StatisticsView  # noqa: E402

DIRECTORY = ROOT / "config" / "directory" / "lai-chau-2024.toml"
INBOUND, OUTBOUND = 1_195_019, 171_330
FROM_AXIS = 1 / 3  # of inbound
ANSWERED = 0.9  # documents a status answers
UNACKNOWLEDGED = 0.02
REFUSED = 0.005  # submissions refused, beside the documents
GOAL_S = 2.0
YEAR_START_MS = int(datetime(2019, 1, 1, tzinfo=UTC).timestamp() * 1000)
WEIGHTS = {"province": 6, "district": 3, "commune": 1}


class History:
    """The events of a year, and what the report must count of them."""

    def __init__(self, scale: float, seed: int = 15) -> None:
        agencies, problems = parse_file(DIRECTORY.name, DIRECTORY.read_text(encoding="utf-8"))
        assert not problems, problems
        self.agencies = agencies
        self.local = [a for a in agencies if a.local]
        self.weights = [WEIGHTS[level_of(a)] for a in self.local]
        self.external = [a for a in agencies if not a.local]
        self.inbound = round(INBOUND * scale)
        self.outbound = round(OUTBOUND * scale)
        self.rng = random.Random(seed)
        self.expected: Counter[str] = Counter()

    def _at(self) -> int:
        day = self.rng.randrange(354)  # so that what follows (<= 10 days) stays in 2019
        return YEAR_START_MS + day * 86_400_000 + self.rng.randrange(1, 10) * 3_600_000

    def events(self) -> Iterator[Event]:
        kinds = ["in"] * self.inbound + ["out"] * self.outbound
        self.rng.shuffle(kinds)
        for i, kind in enumerate(kinds):
            if kind == "in":
                yield from self._inbound(i)
            else:
                yield from self._outbound(i)
            if self.rng.random() < REFUSED:
                yield from self._refused(i)

    def _routed(self, at: int, msg: str, doc: str, sender: Agency, to: Agency, route: str) -> Event:
        """The ROUTED event of a document to `to` (route: mailbox | upstream)."""
        return self._event(
            EventType.ROUTED,
            at,
            msg,
            doc,
            sender.code102,
            recipient=to.code,
            actor="docbroker",
            details={"to": route},
        )

    def _event(self, type_: EventType, at: int, msg: str, doc: str, sender: str, **kw) -> Event:
        return Event(type_, at, msg, doc, sender, "t" * 32, **kw)

    def _accepted(self, at, msg, doc, sender, kind, source, **details) -> Event:
        self.expected["sent_documents" if kind == "document" else "sent_statuses"] += 1
        return self._event(
            EventType.ACCEPTED,
            at,
            msg,
            doc,
            sender.code102,
            actor=sender.code,
            details={"kind": kind, "source": source, **details},
        )

    def _inbound(self, i: int) -> Iterator[Event]:
        from_axis = self.rng.random() < FROM_AXIS
        to = self.rng.choices(self.local, self.weights)[0]
        sender = self.rng.choice(self.external if from_axis else self.local)
        at, msg = self._at(), f"m{i}"
        doc = f"{sender.code102},2019/01/01,{i}/BENCH"
        due = datetime.fromtimestamp(at / 1000 + 7 * 86400, UTC).date().isoformat()
        yield self._accepted(
            at, msg, doc, sender, "document", "axis" if from_axis else "http", due_date=due
        )
        yield self._routed(at, msg, doc, sender, to, "mailbox")
        self.expected["received_documents"] += 1
        self.expected["axis_in"] += from_axis
        fetched = at + int(self.rng.lognormvariate(9, 2))  # a median of ~8 s
        yield self._event(
            EventType.DELIVERED, fetched, msg, doc, sender.code102, recipient=to.code, actor=to.code
        )
        self.expected["delivered"] += 1
        if self.rng.random() < UNACKNOWLEDGED:
            self.expected["pending"] += 1
            return
        yield self._event(
            EventType.ACKNOWLEDGED,
            fetched + 1000,
            msg,
            doc,
            sender.code102,
            recipient=to.code,
            actor=to.code,
        )
        yield from self._answer(i, fetched + 1000, doc, sender, to, from_axis)

    def _answer(self, i, at, doc, sender, to, from_axis) -> Iterator[Event]:
        """The 01 docbroker makes, then the recipient's status."""
        yield self._event(
            EventType.STATUS_EMITTED,
            at,
            f"m{i}.01",
            doc,
            to.code102,
            recipient=sender.code,
            actor=to.code,
            details={"status_code": "01", "to": "upstream" if from_axis else "mailbox"},
        )
        self.expected["status_01"] += 1
        if not from_axis:
            self.expected["received_statuses"] += 1
            self.expected["pending"] += 1  # a sender's software leaves statuses in the box
        if self.rng.random() >= ANSWERED:
            return
        code = self.rng.choice(("03", "04", "05", "06", "06"))
        later = at + self.rng.randrange(1, 10 * 86400) * 1000
        msg = f"s{i}"
        yield self._accepted(later, msg, doc, to, "status", "http", status_code=code)
        self.expected[f"status_{code}"] += 1
        route = "upstream" if from_axis else "mailbox"
        yield self._event(
            EventType.ROUTED,
            later,
            msg,
            doc,
            to.code102,
            recipient=sender.code,
            actor="docbroker",
            details={"to": route},
        )
        if from_axis:
            self.expected["axis_out"] += 1
        else:
            self.expected["received_statuses"] += 1
            self.expected["pending"] += 1

    def _outbound(self, i: int) -> Iterator[Event]:
        sender = self.rng.choices(self.local, self.weights)[0]
        to = self.rng.choice(self.external)
        at, msg = self._at(), f"m{i}"
        doc = f"{sender.code102},2019/01/01,{i}/BENCH"
        yield self._accepted(at, msg, doc, sender, "document", "http")
        yield self._routed(at, msg, doc, sender, to, "upstream")
        yield self._event(
            EventType.SENT_UPSTREAM,
            at + 2000,
            msg,
            doc,
            sender.code102,
            recipient=to.code,
            details={"kind": "document"},
        )
        self.expected["axis_out"] += 1
        self.expected["axis_confirmed"] += 1

    def _refused(self, i: int) -> Iterator[Event]:
        sender = self.rng.choices(self.local, self.weights)[0]
        self.expected["refused"] += 1
        yield self._event(
            EventType.REFUSED,
            self._at(),
            f"r{i}",
            f"{sender.code102},2019/01/01,r{i}/BENCH",
            sender.code102,
            actor="docbroker",
            details={"stage": "pipeline", "problems": [{"code": "schema-invalid"}]},
        )


async def load(settings, history: History) -> tuple[int, float]:
    """Append the history's events to the log; (events, seconds)."""
    topics = Topics.with_prefix(settings.backend.topic_prefix)
    durable = open_log(settings)
    await durable.start()
    started = time.perf_counter()
    try:
        await durable.ensure_topics(topic_specs(settings, topics))
        await put_agencies(durable, topics.directory, history.agencies, "bench")
        head, batch, total = ChainHead("bench:0"), [], 0
        for event in history.events():
            batch.append(event)
            if len(batch) == 5000:
                records, head = link(batch, head, topics.events, topics.chains)
                await durable.append(records)
                total, batch = total + len(batch), []
        records, head = link(batch, head, topics.events, topics.chains)
        await durable.append(records)
        total += len(batch)
    finally:
        await durable.close()
    return total, time.perf_counter() - started


async def catch_up(settings) -> float:
    """The statistics view applies the whole log, as the daemon would at start."""
    topics = Topics.with_prefix(settings.backend.topic_prefix)
    durable = open_log(settings)
    await durable.start()
    try:
        view = StatisticsView(
            durable,
            topics,
            settings.data_path / "statistics.sqlite",
            Directory,
            zone=settings.reports.timezone,
        )
        started = time.perf_counter()
        await view.start(follow=False)
        elapsed = time.perf_counter() - started
        await view.stop()
    finally:
        await durable.close()
    return elapsed


def timed_report(env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker",
            "report",
            "--from",
            "2019-01-01",
            "--to",
            "2019-12-31",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"docbroker report {' '.join(args)} failed: {done.stderr}")
    return elapsed, done.stdout


def compare(expected: Counter[str], data: dict) -> dict[str, tuple[int, int]]:
    """Each generated figure and what the report says of it."""
    totals = data["totals"]
    statuses = Counter()
    for row in data["tables"]["statuses"]:
        statuses[f"status_{row['status']}"] += row["count"]
    delivered = sum(r["delivered"] for r in data["tables"]["delivery"] if r["agency"] == "")
    out = {
        k: (expected[k], totals.get(k, 0))
        for k in (
            "sent_documents",
            "sent_statuses",
            "received_documents",
            "received_statuses",
            "axis_in",
            "axis_out",
            "axis_confirmed",
            "refused",
            "pending",
        )
    }
    out |= {k: (v, statuses[k]) for k, v in expected.items() if k.startswith("status_")}
    out["delivered"] = (expected["delivered"], delivered)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="of the seed province-year")
    ap.add_argument("--quick", action="store_true", help="scale 0.01 (for CI)")
    ap.add_argument("--keep", type=Path, help="data folder to use and keep")
    args = ap.parse_args()
    scale = 0.01 if args.quick else args.scale
    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")},
        "DOCBROKER_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(ROOT),
    }
    settings = load_settings(None, env)
    history = History(scale)
    try:
        events, load_s = asyncio.run(load(settings, history))
        print(
            f"loaded {history.inbound + history.outbound:,} documents ({history.inbound:,} "
            f"inbound, {history.outbound:,} outbound): {events:,} events in {load_s:.1f} s"
        )
        apply_s = asyncio.run(catch_up(settings))
        print(
            f"statistics caught up: {events:,} events in {apply_s:.1f} s "
            f"({events / apply_s:,.0f} events/s)"
        )
        month_s, _ = timed_report(env, "--period", "month")
        json_s, out = timed_report(env, "--period", "month", "--json")
        print(
            f"docbroker report --period month: {month_s:.2f} s "
            f"({month_s / GOAL_S:.0%} of the {GOAL_S:.0f} s goal)"
        )
        print(
            f"docbroker report --period month --json: {json_s:.2f} s "
            f"({json_s / GOAL_S:.0%} of the goal)"
        )
        figures = compare(history.expected, json.loads(out))
        wrong = {k: v for k, v in figures.items() if v[0] != v[1]}
        for key, (generated, reported) in figures.items():
            print(f"  {key:20} generated {generated:>10,}  reported {reported:>10,}")
        print(
            json.dumps(
                {
                    "events": events,
                    "load_s": round(load_s, 2),
                    "apply_s": round(apply_s, 2),
                    "report_s": round(month_s, 3),
                    "report_json_s": round(json_s, 3),
                    "goal_s": GOAL_S,
                    "counts_equal": not wrong,
                }
            )
        )
        if wrong:
            raise SystemExit(f"the report's counts differ from what was generated: {wrong}")
    finally:
        if args.keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
