"""End to end, the statistics: a real daemon on each backend takes a seed-shaped mix
(most documents to the province's own agencies across its three levels, the rest
outside through the national axis; statuses, refusals, acknowledgements), and
`docbroker report --json` (another process, sharing the daemon's statistics file)
equals a count this test makes from what it sent."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from broker.cli.client import DocbrokerClient
from tests.e2e.conftest import DaemonFactory
from tests.e2e.test_province import cli, inbox, read_topic
from tests.edxml_samples import document, status

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROVINCE = "000.00.00.H35"  # H35, sends every document
LOCAL = {  # QCVN 102 code -> the directory's code, at each level
    "000.00.01.H35": "H35.S01",  # Văn phòng UBND tỉnh (province)
    "000.00.02.H35": "H35.S02",  # Sở Nội vụ (province)
    "000.00.41.H35": "H35.105",  # UBND Thành phố Lai Châu (district)
    "000.20.41.H35": "H35.105.03386",  # UBND Phường Quyết Thắng (commune, in H35.105)
}
OUTSIDE = "000.00.00.G22"  # outside the province: upstream
UNKNOWN = "999.99.99.X99"  # in no directory
DOCUMENTS = 120
# yesterday in the reports' zone: past due, and in the default period (this year)
PAST_DUE = (datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date() - timedelta(days=1)).strftime(
    "%Y/%m/%d"
)
LOCAL_SHARE = 0.87


def doc_id(i: int) -> str:
    return f"{PROVINCE},2026/11/20,{i}/BC-TK"


def send_mix(client: DocbrokerClient) -> Counter[str]:
    """Send the mix; what the report must say of it."""
    want: Counter[str] = Counter()
    local_count = round(DOCUMENTS * LOCAL_SHARE)
    codes = list(LOCAL)
    routed: list[tuple[int, str]] = []
    for i in range(DOCUMENTS):
        to = codes[i % len(codes)] if i < local_count else OUTSIDE
        due = PAST_DUE if i % 3 == 0 else "2099/12/31"  # past due, or not yet
        client.submit(
            document(sender=PROVINCE, recipients=(to,), document_id=doc_id(i), due_date=due)
        )
        want["sent_documents"] += 1
        if to == OUTSIDE:
            want["axis_out"] += 1
        else:
            want["received_documents"] += 1
            want[f"received:{LOCAL[to]}"] += 1
            routed.append((i, to))
            if i % 3 == 0:
                want[f"overdue:{LOCAL[to]}"] += 1  # unless done below
    for i in range(500, 510):  # only to an agency in no directory: refused as a whole
        client.submit(document(sender=PROVINCE, recipients=(UNKNOWN,), document_id=doc_id(i)))
        want["refused"] += 1
        want["status:02"] += 1
        want["received_statuses"] += 1  # the 02 to the province
    for i, to in routed[::2]:  # every other recipient fetches and acknowledges
        entry = next(e for e in inbox(client, to, 1, timeout=60) if e["document_id"] == doc_id(i))
        client.fetch(to, entry["message_id"])
        client.ack(to, entry["message_id"])
        want["delivered"] += 1
        want["status:01"] += 1
        want["received_statuses"] += 1
        code = "06" if i % 2 == 0 else "03"
        client.submit(status(sender=to, answers=PROVINCE, document_id=doc_id(i), code=code))
        want["sent_statuses"] += 1
        want[f"status:{code}"] += 1
        want["received_statuses"] += 1
        if code == "06":
            want[f"{'late' if i % 3 == 0 else 'on_time'}:{LOCAL[to]}"] += 1
            if i % 3 == 0:
                want[f"overdue:{LOCAL[to]}"] -= 1
    acked = len(routed[::2])
    want["pending"] = want["received_documents"] - acked + want["received_statuses"]
    return want


def wait_until_processed(
    client: DocbrokerClient, daemon_env: dict[str, str], want: Counter
) -> None:
    """Every status is in the province's mailbox and every outside document upstream."""
    inbox(client, PROVINCE, want["received_statuses"], timeout=120)
    deadline = time.monotonic() + 60
    while len(read_topic(daemon_env, "upstream")) < want["axis_out"]:
        assert time.monotonic() < deadline, "documents for outside the province not upstream"
        time.sleep(1)


def report(daemon_env: dict[str, str], *args: str) -> dict:
    done = cli(daemon_env, "report", "--json", "--from", "2020-01-01", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_report_equals_what_was_sent(daemons: DaemonFactory, daemon_env: dict[str, str]) -> None:
    client = daemons().client()
    want = send_mix(client)
    wait_until_processed(client, daemon_env, want)
    data = report(daemon_env)
    totals = data["totals"]
    for key in (
        "sent_documents",
        "sent_statuses",
        "received_documents",
        "received_statuses",
        "axis_out",
        "refused",
        "pending",
    ):
        assert totals[key] == want[key], (key, totals[key], want[key])
    assert totals["axis_in"] == 0
    tables = data["tables"]
    got_statuses = Counter()
    for row in tables["statuses"]:
        got_statuses[f"status:{row['status']}"] += row["count"]
    assert got_statuses == Counter({k: v for k, v in want.items() if k.startswith("status:")})
    refusals = {(r["agency"], r["code"]): r["count"] for r in tables["refusals"]}
    assert refusals == {("H35", "pipeline:unknown-recipient"): want["refused"]}
    received = Counter()
    for row in tables["traffic"]:
        received[f"received:{row['agency']}"] += row["received_documents"]
    assert {k: v for k, v in received.items() if v} == {
        k: v for k, v in want.items() if k.startswith("received:")
    }
    on_time = Counter()
    for row in tables["on_time"]:
        for key in ("on_time", "late", "overdue"):
            on_time[f"{key}:{row['agency']}"] += row[key]
    assert +on_time == +Counter(
        {k: v for k, v in want.items() if k.split(":")[0] in ("on_time", "late", "overdue")}
    )
    (everyone,) = [r for r in tables["delivery"] if r["agency"] == ""]
    assert everyone["delivered"] == want["delivered"] and everyone["p50_s"] is not None

    # rolled up to districts: the commune's documents count as its district's
    district = report(daemon_env, "--level", "district")
    rolled = Counter()
    for row in district["tables"]["traffic"]:
        rolled[row["agency"]] += row["received_documents"]
    assert rolled["H35.105"] == want["received:H35.105"] + want["received:H35.105.03386"]
    assert "H35.105.03386" not in rolled
    # and by year, the same totals; one agency alone
    assert report(daemon_env, "--period", "year")["totals"] == totals
    alone = report(daemon_env, "--agency", "H35.105")
    assert alone["totals"]["received_documents"] == rolled["H35.105"]
    today = datetime.now(UTC).date().isoformat()
    assert data["query"]["to"] >= today


def test_report_files(daemons: DaemonFactory, daemon_env: dict[str, str], tmp_path: Path) -> None:
    """The exports: Excel, the chart as SVG and PNG, CSV."""
    client = daemons().client()
    client.submit(document(sender=PROVINCE, recipients=("000.00.41.H35",), document_id=doc_id(900)))
    inbox(client, "000.00.41.H35", 1)
    xlsx, svg, png = tmp_path / "r.xlsx", tmp_path / "r.svg", tmp_path / "r.png"
    assert cli(daemon_env, "report", "--xlsx", str(xlsx), "--chart", str(svg)).returncode == 0
    assert cli(daemon_env, "report", "--chart", str(png)).returncode == 0
    assert xlsx.read_bytes()[:2] == b"PK" and png.read_bytes()[:4] == b"\x89PNG"
    assert "<script" not in svg.read_text(encoding="utf-8")
    done = cli(daemon_env, "report", "--csv")
    assert "traffic," in done.stdout and "H35.105" in done.stdout
    bad = cli(daemon_env, "report", "--chart", str(tmp_path / "r.gif"))
    assert bad.returncode == 2
