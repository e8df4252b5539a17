#!/usr/bin/env python3
"""Bytes on disk per envelope, on each backend, through the real pipeline; and what a
province-year and the country need.

A real `docbroker serve` takes envelopes over HTTP (one recipient each, a local
agency), the pipeline checks, signs and delivers them, the recipient fetches and
acknowledges each one: so `inbound` (the sender's bytes), `mailbox` (the signed
copy), `events` (the audit trail), `dedup`, `receipts` and both read models all
grow as in production. The daemon is stopped before and after (the embedded log's
WAL is checkpointed into the file); growth / envelopes is the figure.

- embedded: growth of log.sqlite, and of mailbox.sqlite + documents.sqlite, with the
  per-topic bytes of `docbroker status --json`;
- kafka (`--kafka`): growth of the broker's log segments (*.log under its log dir,
  the topics of this run) of a local single-node Kafka (bin/kafka-local, replication
  1: multiply by the replication factor of a cluster), with the read models.

    .venv/bin/python bench/bench_sizing.py [--small 1000] [--large 100] [--kafka]

Extrapolation: a province-year is 1,366,349 documents (Lai Châu by end of 2019), 87 %
inbound (received by the province's agencies); each document is counted as one
measured envelope (an inbound one from the national axis also becomes inbound +
mailbox + events; an outbound one inbound + upstream instead of mailbox: the same
bytes give or take the mailbox copy). The country is 63 such provinces.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.views.sizes import file_bytes  # noqa: E402
from tests.e2e.daemon import Daemon, TokenBook  # noqa: E402
from tests.edxml_samples import document  # noqa: E402
from tests.pki import install_keys  # noqa: E402

SENDER = "000.00.00.H35"
RECIPIENT = "000.00.07.H35"
DIRECTORY = ROOT / "config" / "directory" / "lai-chau-2024.toml"
PROVINCE_YEAR = 1_366_349
INBOUND_SHARE = 0.87
PROVINCES = 63


def envelope(size: int, n: int, run: str) -> bytes:
    doc_id = f"{SENDER},2026/12/01,{n}/{run}"
    base = len(document(recipients=(RECIPIENT,), document_id=doc_id))
    return document(recipients=(RECIPIENT,), document_id=doc_id, padding=max(0, size - base))


def topic_bytes(env: dict[str, str]) -> dict[str, int]:
    """`docbroker status --json`: bytes per topic (embedded), records otherwise."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
    out = subprocess.run(
        [sys.executable, "-m", "broker", "status", "--json"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out[out.index("{") :])
    return {t.rsplit(".", 1)[-1]: v["bytes"] or 0 for t, v in data["topics"].items()}


def kafka_segments(logs: Path | None, prefix: str) -> int:
    if logs is None:
        return 0
    return sum(
        f.stat().st_size
        for d in logs.iterdir()
        if d.is_dir() and d.name.startswith(prefix)
        for f in d.glob("*.log")
    )


def footprint(env: dict[str, str], logs: Path | None, prefix: str) -> dict[str, int]:
    data = Path(env["DOCBROKER_DATA_DIR"])
    views = sum(file_bytes(data / n) or 0 for n in ("mailbox.sqlite", "documents.sqlite"))
    out = {"views": views}
    if logs is None:
        out["log"] = file_bytes(data / "log.sqlite") or 0
        out.update({f"topic:{k}": v for k, v in topic_bytes(env).items()})
    else:
        out["log"] = kafka_segments(logs, prefix)
    return out


def deliver(daemon: Daemon, envelopes: list[bytes]) -> None:
    """Submit (4 at a time), wait for every delivery, fetch and acknowledge each."""
    client = daemon.client()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(client.submit, envelopes))
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + 600
    while len(seen) < len(envelopes) and time.monotonic() < deadline:
        page = client.inbox(RECIPIENT, wait=1, limit=1000)
        seen.update({e["message_id"]: e for e in page["envelopes"]})
        with ThreadPoolExecutor(4) as pool:
            list(
                pool.map(
                    lambda m: acknowledge(client, m), [e["message_id"] for e in page["envelopes"]]
                )
            )
    if len(seen) < len(envelopes):
        raise RuntimeError(f"{len(seen)} of {len(envelopes)} delivered")


def acknowledge(client, message_id: str) -> None:
    client.fetch(RECIPIENT, message_id)
    client.ack(RECIPIENT, message_id)


def measure(env: dict, logs: Path | None, work: Path, size: int, n: int) -> dict:
    """Bytes per envelope of `size` bytes, from the growth over `n` of them."""
    prefix = env["DOCBROKER_BACKEND_TOPIC_PREFIX"]
    tokens = TokenBook(env)
    run = f"{size}-{n}-{time.monotonic_ns()}"
    daemon = Daemon(work / f"d-{size}", env, tokens=tokens).start()
    try:
        deliver(daemon, [envelope(size, i, "warm" + run) for i in range(5)])
        daemon.stop()
        before = footprint(env, logs, prefix)
        daemon.start()
        started = time.monotonic()
        deliver(daemon, [envelope(size, i, run) for i in range(n)])
        seconds = time.monotonic() - started
        time.sleep(2)  # the read models follow the last acknowledgements
        daemon.stop()
        after = footprint(env, logs, prefix)
    finally:
        daemon.kill()
    growth = {k: (after[k] - before.get(k, 0)) / n for k in after}
    return {"envelope_bytes": len(envelope(size, 0, run)), "n": n, "seconds": seconds, **growth}


def backend_env(data: Path, backend: str, bootstrap: str | None) -> dict[str, str]:
    env = {
        "DOCBROKER_DATA_DIR": str(data),
        "DOCBROKER_BACKEND_TYPE": backend,
        "DOCBROKER_BACKEND_TOPIC_PREFIX": f"sizing.{os.getpid()}.{backend}.",
        "DOCBROKER_DIRECTORY_SEED_FILE": str(DIRECTORY),
        "DOCBROKER_HTTP_RATE_LIMIT": "0",
    }
    if bootstrap:
        env["DOCBROKER_BACKEND_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    return env


def run_backend(backend: str, sizes: list[tuple[int, int]], kafka: Path | None, boot: str | None):
    results = []
    for size, n in sizes:
        work = Path(tempfile.mkdtemp(prefix=f"bench-sizing-{backend}-"))
        try:
            install_keys(work / "data")
            env = backend_env(work / "data", backend, boot)
            logs = kafka / "logs" if kafka else None
            results.append({"backend": backend, **measure(env, logs, work, size, n)})
            print(json.dumps(results[-1]), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return results


def extrapolate(row: dict) -> dict[str, float]:
    per_doc = row["log"] + row["views"]
    province = per_doc * PROVINCE_YEAR
    return {
        "per_document_bytes": per_doc,
        "log_bytes_per_document": row["log"],
        "province_year_gb": province / 1e9,
        "province_year_inbound_gb": province * INBOUND_SHARE / 1e9,
        "country_year_tb": province * PROVINCES / 1e12,
    }


def report(results: list[dict]) -> None:
    print("\nbackend   envelope   log B/env   views B/env   province-year   country-year")
    for row in results:
        x = extrapolate(row)
        print(
            f"{row['backend']:<9} {row['envelope_bytes'] / 1024:>7.0f} KiB "
            f"{row['log']:>11,.0f} {row['views']:>13,.0f} "
            f"{x['province_year_gb']:>12,.1f} GB {x['country_year_tb']:>11,.2f} TB"
        )
        topics = {k[6:]: round(v) for k, v in row.items() if k.startswith("topic:") and v}
        if topics:
            print(f"          per topic (payload bytes/env): {topics}")


class LocalKafka:
    """A single-node Kafka of bin/kafka-local in a temporary folder."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-sizing-kafka-")) / "kafka"  # made by it

    def __enter__(self) -> tuple[Path, str]:
        out = subprocess.run(
            [sys.executable, str(ROOT / "bin" / "kafka-local"), "start", "--dir", str(self.dir)],
            capture_output=True,
            text=True,
            check=True,
        )
        return self.dir, json.loads(out.stdout.strip().splitlines()[-1])["bootstrap"]

    def __exit__(self, *exc: object) -> None:
        kafka = [sys.executable, str(ROOT / "bin" / "kafka-local")]
        subprocess.run([*kafka, "stop", "--dir", str(self.dir)], capture_output=True, check=False)
        shutil.rmtree(self.dir.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=1000, help="envelopes of 10 KB")
    parser.add_argument("--large", type=int, default=100, help="envelopes of 1 MB")
    parser.add_argument("--kafka", action="store_true", help="also on a local Kafka")
    parser.add_argument("--no-embedded", action="store_true")
    args = parser.parse_args()
    sizes = [(10 * 1024, args.small), (1024 * 1024, args.large)]
    results = []
    if not args.no_embedded:
        results += run_backend("embedded", sizes, None, None)
    if args.kafka:
        with LocalKafka() as (home, bootstrap):
            results += run_backend("kafka", sizes, home, bootstrap)
    report(results)


if __name__ == "__main__":
    main()
