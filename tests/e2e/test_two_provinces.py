"""Two provinces and the national axis: two docbroker daemons (Lai Châu, H35, and Lào
Cai, H36), each linked to one simulator of the national axis, as real processes.

A commune of one province writes to a commune of the other: the document goes up
through the axis, comes down into the other province's mailbox, and the statuses
return the same way. The simulator is taken down for 60 s while 1,000 documents
flow: none is lost or duplicated."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.national_axis.client import AxisClient
from adapters.national_axis.protocol import AxisError
from broker.cli.client import DocbrokerClient
from tests.conftest import backend_env
from tests.e2e.daemon import Daemon, TokenBook, free_port
from tests.e2e.test_province import V, inbox, read_topic, receive, statuses
from tests.edxml_samples import document, status
from tests.pki import install_keys

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
LAI_CHAU = ROOT / "config" / "directory" / "lai-chau.toml"
LAO_CAI = ROOT / "config" / "directory" / "lao-cai-demo.toml"
COMMUNE_A, COMMUNE_A2 = "000.21.99.H35", "000.22.99.H35"  # Xã Bình Lư, Xã Sin Suối Hồ
COMMUNE_B, COMMUNE_B2 = "000.21.99.H36", "000.22.99.H36"  # Xã Bản Lầu, Xã Mường Khương
SECRETS = {"vdxp-h35": "secret-of-lai-chau", "vdxp-h36": "secret-of-lao-cai"}
ORGAN_IDS = {"vdxp-h35": "000.99.99.H35", "vdxp-h36": "000.99.99.H36"}


class Simulator:
    """The national axis simulator as its own process, its documents in a state file
    so that it can be taken down and brought back."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = workdir / "axis.toml"
        self.config.write_text(
            f'state_file = "{workdir / "state.sqlite"}"\n'
            + "".join(
                f'[[system]]\nid = "{sid}"\nsecret = "{secret}"\ndirectory = "{directory}"\n'
                # the broker's own statuses (01, 02) go out under its organ_id
                f'organ_id = "{ORGAN_IDS[sid]}"\n'
                for (sid, secret), directory in zip(
                    SECRETS.items(), (LAI_CHAU, LAO_CAI), strict=True
                )
            ),
            encoding="utf-8",
        )
        self.log = workdir / "axis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Simulator:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "adapters.national_axis.simulator",
                    "--config",
                    str(self.config),
                    "--port",
                    str(self.port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/_sim/healthz", timeout=2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"simulator not up: {self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/_sim/state", timeout=5) as resp:
            return json.load(resp)

    def faults(self, **settings: object) -> None:
        """Set the fault injection (no arguments: clear it)."""
        body = json.dumps(settings).encode() if settings else None
        method = "POST" if settings else "DELETE"
        req = urllib.request.Request(
            f"{self.url}/_sim/faults", data=body, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=5):
            pass


@dataclass
class Province:
    daemon: Daemon
    tokens: TokenBook

    def client(self, agency: str) -> DocbrokerClient:
        return self.daemon.client_for(agency)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"{self.daemon.url}/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return 0.0  # a labelled series not seen yet


@pytest.fixture
def axis(tmp_path: Path) -> Iterator[Simulator]:
    sim = Simulator(tmp_path / "axis").start()
    yield sim
    sim.stop()


@pytest.fixture
def provinces(
    tmp_path: Path,
    axis: Simulator,
    backend: str,
    unique_prefix: str,
    kafka_bootstrap: str | None,
) -> Iterator[tuple[Province, Province]]:
    started: list[Daemon] = []

    def province(name: str, system: str, seed: Path, organ_id: str) -> Province:
        data = tmp_path / name / "data"
        install_keys(data)
        env = {
            **backend_env(backend, data, f"{unique_prefix}{name}.", kafka_bootstrap),
            "DOCBROKER_DIRECTORY_SEED_FILE": str(seed),
            "DOCBROKER_HTTP_RATE_LIMIT": "0",
            "DOCBROKER_ORGAN_ID": organ_id,
            "DOCBROKER_NATIONAL_AXIS_ENABLED": "true",
            "DOCBROKER_NATIONAL_AXIS_BASE_URL": axis.url,
            "DOCBROKER_NATIONAL_AXIS_SYSTEM_ID": system,
            "DOCBROKER_NATIONAL_AXIS_POLL_INTERVAL": "0.5",
            "DOCBROKER_NATIONAL_AXIS_DELIVERY_CHECK_INTERVAL": "0.5",
            "DOCBROKER_NATIONAL_AXIS_BREAKER_RESET": "2",
            "DOCBROKER_NATIONAL_AXIS_RETRY_ATTEMPTS": "3",
            "DOCBROKER_NATIONAL_AXIS_RETRY_BASE": "0.05",
            "DOCBROKER_NATIONAL_AXIS_RETRY_MAX": "0.2",
            "DOCBROKER_AXIS_SECRET": SECRETS[system],
        }
        tokens = TokenBook(env)
        daemon = Daemon(tmp_path / name, env, name=name, tokens=tokens)
        started.append(daemon)
        return Province(daemon.start(), tokens)

    a = province("lai-chau", "vdxp-h35", LAI_CHAU, ORGAN_IDS["vdxp-h35"])
    b = province("lao-cai", "vdxp-h36", LAO_CAI, ORGAN_IDS["vdxp-h36"])
    yield a, b
    for d in started:
        d.kill()


def test_a_document_crosses_provinces_and_its_statuses_return(
    provinces: tuple[Province, Province],
) -> None:
    a, b = provinces
    doc = f"{COMMUNE_A},2026/11/20,15/UBND"
    a.client(COMMUNE_A).submit(document(sender=COMMUNE_A, recipients=(COMMUNE_B,), document_id=doc))

    ((_entry, data),) = receive(b.client(COMMUNE_B), COMMUNE_B)
    env = V.check(data)
    assert (env.sender_id, env.document_id, env.recipient_ids) == (COMMUNE_A, doc, (COMMUNE_B,))
    assert [t.organ_id for t in env.trace] == ["000.99.99.H35", "000.99.99.H36"]  # both hops
    b.client(COMMUNE_B).submit(status(sender=COMMUNE_B, answers=COMMUNE_A, document_id=doc))

    # the 01 docbroker B made on the acknowledgement, and the commune's own 03
    back = receive(a.client(COMMUNE_A), COMMUNE_A, count=2)
    assert statuses(back) == [("01", doc), ("03", doc)]
    # the sender's view: sent upstream, taken by the other province (getSentEdocList),
    # and the latest status
    deadline = time.monotonic() + 30
    while True:
        (recipient,) = a.client(COMMUNE_A).document(doc)["recipients"]
        if recipient["delivered_at"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert recipient["route"] == "upstream" and recipient["sent_upstream_at"]
    assert recipient["delivered_at"] and recipient["delivered_at"] >= recipient["sent_upstream_at"]
    assert recipient["latest_status"]["code"] in ("01", "03")
    # each province knows the other's agencies from the axis's list
    assert any(x["code"] == "H36.00001" for x in a.client(COMMUNE_A).agencies()["agencies"])


def test_an_envelope_the_axis_refuses_is_dead_lettered_and_the_sender_hears(
    provinces: tuple[Province, Province],
) -> None:
    """G22 is in Lai Châu's directory as external, but no province on this axis serves
    it: the axis answers AgencyNotFound; after the retry budget (3 here) the envelope
    goes to `rejected` and the sender gets a status 02."""
    a, _ = provinces
    doc = f"{COMMUNE_A},2026/11/20,16/UBND"
    a.client(COMMUNE_A).submit(
        document(sender=COMMUNE_A, recipients=("000.00.00.G22",), document_id=doc)
    )
    ((_, data),) = receive(a.client(COMMUNE_A), COMMUNE_A)
    env = V.check(data)
    assert env.status_code is not None and env.status_code.value == "02"
    assert "AgencyNotFound" in (env.status_description or "")
    (dead,) = [
        r for r in read_topic(a.daemon.env, "rejected") if r.header_str("stage") == "upstream"
    ]
    assert json.loads(dead.header_str("problems"))[0]["code"] == "upstream-failed"
    (recipient,) = a.client(COMMUNE_A).document(doc)["recipients"]
    assert recipient["route"] == "refused" and recipient["refused_code"] == "upstream-failed"
    assert a.metric('docbroker_upstream_envelopes_total{outcome="dead-lettered"}') == 1


def test_a_package_whose_confirmation_failed_is_taken_once(
    provinces: tuple[Province, Province], axis: Simulator
) -> None:
    """updateStatus done fails for a while: the axis lists the package again and again,
    and the receiving province confirms it without taking it twice."""
    a, b = provinces
    axis.faults(fail_rate=1.0, fail_status=500, operations=["updateStatus"])
    doc = f"{COMMUNE_A},2026/11/20,17/UBND"
    a.client(COMMUNE_A).submit(document(sender=COMMUNE_A, recipients=(COMMUNE_B,), document_id=doc))
    inbox(b.client(COMMUNE_B), COMMUNE_B, 1)
    time.sleep(2)  # several polls list it again while done keeps failing
    axis.faults()
    deadline = time.monotonic() + 20
    while axis.state()["entries"]["edoc"]["done"] < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert axis.state()["entries"]["edoc"] == {"initial": 0, "processing": 0, "done": 1, "fail": 0}
    taken = [r for r in read_topic(b.daemon.env, "inbound") if r.header_str("axis-doc-id")]
    assert len(taken) == 1, "appended to inbound once"
    entries = b.client(COMMUNE_B).inbox(COMMUNE_B, include_acked=True)["envelopes"]
    assert [e["document_id"] for e in entries] == [doc]


@pytest.mark.kafka
@pytest.mark.parametrize("backend", ["kafka"])  # the production backend
def test_the_axis_down_for_60_s_while_1000_documents_flow_loses_none(
    provinces: tuple[Province, Province], axis: Simulator
) -> None:
    a, b = provinces
    senders = [COMMUNE_A, COMMUNE_A2, "000.00.00.H35", "000.00.01.H35"]
    clients = {s: a.client(s) for s in senders}
    total, outage_at = 1000, 200
    sent: list[str] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        sender = senders[i % len(senders)]
        doc = f"{sender},2026/11/20,{i}/OUTAGE"
        to = (COMMUNE_B,) if i % 2 else (COMMUNE_B2,)
        clients[sender].submit(document(sender=sender, recipients=to, document_id=doc))
        with lock:
            sent.append(doc)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(submit, range(outage_at)))
        axis.stop()
        down_at = time.monotonic()
        list(pool.map(submit, range(outage_at, total)))
        breaker_opened = False
        while time.monotonic() - down_at < 60:
            breaker_opened |= a.metric("docbroker_axis_breaker_state") >= 1
            time.sleep(1)
        queued = a.metric("docbroker_upstream_queue_records")
        axis.start()
    assert breaker_opened, "the breaker opened while the axis was down"
    assert queued > 0, "documents waited upstream during the outage"

    # every document lands in one of the two communes of the other province, once
    deadline = time.monotonic() + 240
    landed: Counter[str] = Counter()
    while time.monotonic() < deadline:
        landed = Counter()
        for commune in (COMMUNE_B, COMMUNE_B2):
            client = b.client(commune)
            after = 0
            while True:
                page = client.inbox(commune, after=after, limit=1000, include_acked=True)
                landed.update(e["document_id"] for e in page["envelopes"])
                if not page["envelopes"]:
                    break
                after = page["next_after"]
        if sum(landed.values()) >= total:
            break
        time.sleep(2)
    assert len(sent) == total
    assert set(landed) == set(sent), f"{len(set(sent) - set(landed))} lost"
    assert max(landed.values()) == 1, "delivered twice"
    assert a.metric('docbroker_upstream_envelopes_total{outcome="dead-lettered"}') == 0
    print(
        f"\n{total} documents, axis down 60 s after {outage_at}: all landed "
        f"{time.monotonic() - down_at - 60:.1f} s after it came back; "
        f"{queued:.0f} waited upstream at the end of the outage"
    )


async def test_the_axis_refuses_a_wrong_secret(axis: Simulator) -> None:
    """docbroker's own client against the simulator: the right secret is answered, a
    wrong one refused as unavailable (the sender then waits behind its breaker)."""
    right = AxisClient(axis.url, "vdxp-h35", SECRETS["vdxp-h35"])
    wrong = AxisClient(axis.url, "vdxp-h35", "not-the-secret")
    try:
        assert await right.received("edoc") == []
        with pytest.raises(AxisError) as refused:
            await wrong.received("edoc")
        assert refused.value.code == "Unauthorized" and refused.value.unavailable
    finally:
        await right.close()
        await wrong.close()
    assert axis.state()["refused"] == 1
