"""`docbroker rejected list|show` against a running deployment: a package refused at
the door is found with its problems and its bytes."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from broker.cli.client import ApiProblem
from tests.e2e.conftest import DaemonFactory
from tests.e2e.test_province import cli
from tests.edxml_samples import document

pytestmark = [pytest.mark.e2e]

BROKEN = b"<?xml version='1.0'?><edXML xmlns='http://www.mic.gov.vn/TBT/QCVN_102_2016'>"


def test_list_and_show_dead_letters(
    daemons: DaemonFactory, daemon_env: dict[str, str], tmp_path: Path
) -> None:
    client = daemons().client()
    with pytest.raises(ApiProblem) as refused:
        client.submit(BROKEN)
    assert refused.value.code == "not-well-formed"
    client.submit(document(recipients=("000.00.01.H35",)))  # accepted: not a dead letter
    deadline = time.monotonic() + 30
    letters: list = []
    while len(letters) < 1 and time.monotonic() < deadline:
        run = cli(daemon_env, "rejected", "list", "--json")
        assert run.returncode == 0, run.stderr
        letters = json.loads(run.stdout)
        time.sleep(0.3)
    (broken,) = [d for d in letters if d["stage"] == "accept"]
    assert broken["problems"][0]["code"] == "not-well-formed" and broken["size"] == len(BROKEN)

    only = json.loads(cli(daemon_env, "rejected", "list", "--json", "--stage", "upstream").stdout)
    assert only == []
    out = tmp_path / "dead.edxml"
    show = cli(daemon_env, "rejected", "show", broken["message_id"], "-o", str(out))
    assert show.returncode == 0 and "not-well-formed" in show.stdout
    assert out.read_bytes() == BROKEN
    missing = cli(daemon_env, "rejected", "show", "no-such-id")
    assert missing.returncode == 1 and "not-found" in missing.stderr


def test_a_door_refusal_is_counted_once_and_names_its_caller(
    daemons: DaemonFactory, daemon_env: dict[str, str]
) -> None:
    """The door counts the refusal; the pipeline, which records it, does not count it
    again: one refusal, 1 in docbroker_envelopes_refused_total, whatever its labels."""
    daemon = daemons()
    with pytest.raises(ApiProblem):
        daemon.client().submit(BROKEN)
    deadline = time.monotonic() + 30
    letters: list = []
    while not letters and time.monotonic() < deadline:
        letters = json.loads(cli(daemon_env, "rejected", "list", "--json").stdout)
        time.sleep(0.3)
    (letter,) = letters
    assert letter["caller"] == "H35"  # the agency whose token the request came with
    show = cli(daemon_env, "rejected", "show", letter["message_id"])
    assert "caller H35" in show.stdout
    time.sleep(1.0)  # the pipeline's metrics of that batch are observed after its commit
    with urllib.request.urlopen(f"{daemon.url}/metrics", timeout=5) as resp:
        lines = resp.read().decode().splitlines()
    refused = [ln for ln in lines if ln.startswith("docbroker_envelopes_refused_total{")]
    assert sum(float(ln.rsplit(" ", 1)[1]) for ln in refused) == 1.0, refused
