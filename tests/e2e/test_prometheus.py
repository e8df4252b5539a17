"""A real Prometheus scrapes a live docbroker and evaluates the alert rules.

Debian's /usr/bin/prometheus runs on 127.0.0.1 with its own storage and a 1 s scrape
and evaluation interval. The rule file is config/prometheus/alerts.yml with two
test-sized changes made here: the working-day threshold (the recording rule) is 2 s
at any hour, and every `for` is 3 s. An envelope delivered to H35.S01 and not
fetched must make DocbrokerMailUnfetched fire for that agency, and only that one,
while DocbrokerNotReady does not; once H35.S01 acknowledges it, the alert goes. The
dashboard's queries are asked of the same Prometheus.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import DaemonFactory
from tests.e2e.daemon import Daemon, free_port
from tests.edxml_samples import document
from tests.prometheus_tools import RULES, dashboard, expressions, substituted, tool

pytestmark = pytest.mark.e2e

SENDER, RECIPIENT, IDLE = "000.00.00.H35", "000.00.01.H35", "000.00.02.H35"
THRESHOLD = "docbroker:unfetched_mail_threshold_seconds"


def shrunk_rules(path: Path) -> Path:
    """The rule file with the working-day threshold at 2 s and every `for` at 3 s;
    the alerts' expressions are unchanged."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("record") == THRESHOLD:
                rule["expr"] = "vector(2)"
            if "for" in rule:
                rule["for"] = "3s"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


class Prometheus:
    """One Prometheus process and its HTTP API."""

    def __init__(self, workdir: Path, target: str, rules: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": "docbroker", "static_configs": [{"targets": [target]}]}
            ],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log_path = workdir / "prometheus.log"
        self.storage = workdir / "tsdb"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Prometheus:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    tool("prometheus"),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.storage}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.until(lambda: self.get("/-/ready", raw=True) == "ok", timeout, "ready")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def get(self, path: str, raw: bool = False, **params: str) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = resp.read().decode()
        except OSError:
            return None
        if raw:
            return "ok" if "Ready" in body else body
        return json.loads(body)["data"]

    def query(self, expr: str) -> dict[str, float]:
        """An instant query's samples, by their labels' text."""
        found = self.get("/api/v1/query", query=expr) or {"result": []}
        return {
            json.dumps(s["metric"], sort_keys=True): float(s["value"][1]) for s in found["result"]
        }

    def alerts(self) -> list[dict[str, Any]]:
        return (self.get("/api/v1/alerts") or {"alerts": []})["alerts"]

    def until(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.logs()}")
            if found := check():
                return found
            time.sleep(0.5)
        raise AssertionError(f"prometheus: not {what} within {timeout} s:\n{self.logs()[-3000:]}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[Daemon], Prometheus]]:
    started: list[Prometheus] = []

    def start(daemon: Daemon) -> Prometheus:
        workdir = tmp_path / "prometheus"
        workdir.mkdir()
        rules = shrunk_rules(workdir / "alerts.yml")
        p = Prometheus(workdir, f"127.0.0.1:{daemon.port}", rules)
        started.append(p)
        return p.start()

    yield start
    for p in started:
        p.stop()


def firing(prom: Prometheus, name: str) -> list[dict[str, str]]:
    """The labels of each firing alert called `name`."""
    return [
        a["labels"]
        for a in prom.alerts()
        if a["labels"]["alertname"] == name and a["state"] == "firing"
    ]


@pytest.mark.parametrize("backend", ["embedded"])
def test_unfetched_mail_fires_for_its_agency_in_a_real_prometheus(
    daemons: DaemonFactory, prometheus: Callable[[Daemon], Prometheus]
) -> None:
    daemon = daemons()
    client = daemon.client()
    accepted = client.submit(document(sender=SENDER, recipients=(RECIPIENT,)))
    prom = prometheus(daemon)

    # the scrape works, the daemon is ready, and every rule evaluates without error
    prom.until(lambda: prom.query('up{job="docbroker"} == 1'), 30, "scraping docbroker")
    prom.until(lambda: prom.query("docbroker_ready == 1"), 30, "seeing docbroker ready")
    pending = prom.until(
        lambda: prom.query('docbroker_mailbox_pending_by_agency{agency="H35.S01"} == 1'),
        30,
        "seeing H35.S01's backlog",
    )
    assert pending
    alert = prom.until(lambda: firing(prom, "DocbrokerMailUnfetched"), 60, "firing")
    assert [a["agency"] for a in alert] == ["H35.S01"], alert
    assert alert[0]["severity"] == "warning" and alert[0]["job"] == "docbroker"
    rules = prom.get("/api/v1/rules")["groups"]
    unhealthy = [
        (r["name"], r.get("lastError")) for g in rules for r in g["rules"] if r["health"] != "ok"
    ]
    assert unhealthy == []
    queries = [substituted(expr) for _, expr in expressions(dashboard())]
    unanswered = [expr for expr in queries if prom.get("/api/v1/query", query=expr) is None]
    assert unanswered == []  # every panel's query is answered (a 400 would be None)
    names = {a["labels"]["alertname"] for a in prom.alerts()}
    assert "DocbrokerNotReady" not in names and "DocbrokerDown" not in names, prom.alerts()
    idle = prom.query('docbroker_mailbox_pending_by_agency{agency="H35.S02"}')
    assert list(idle.values()) == [0.0], idle  # an agency with nothing waiting reads 0

    # H35.S01 fetches and acknowledges: its gauge reads 0 and the alert goes
    (entry,) = client.inbox(RECIPIENT)["envelopes"]
    assert entry["message_id"] == accepted["message_id"]
    client.fetch(RECIPIENT, entry["message_id"])
    client.ack(RECIPIENT, entry["message_id"])
    prom.until(
        lambda: prom.query('docbroker_mailbox_pending_by_agency{agency="H35.S01"} == 0'),
        30,
        "seeing H35.S01's backlog gone",
    )
    prom.until(lambda: not firing(prom, "DocbrokerMailUnfetched"), 30, "resolved")
