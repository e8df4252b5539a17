"""The README's examples work as written: its shell blocks marked `readme-example` run,
in order, in bash against a daemon started as `bin/run` starts it (the development
configuration and keys); only the port differs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.daemon import Daemon

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- readme-example: (\w+) -->\n```sh\n(.*?)```", re.S)


def readme_examples() -> dict[str, str]:
    return dict(BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8")))


def json_objects(text: str) -> list[dict]:
    """The JSON objects in a stream of curl answers and other output."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) >= 0:
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            at += 1
            continue
        if isinstance(value, dict):
            found.append(value)
        at = end
    return found


def test_the_readme_names_its_examples() -> None:
    assert list(readme_examples()) == ["native", "cli", "sdk", "https"]


def run_examples(tmp_path: Path, names: list[str], tls: bool = False) -> tuple[str, str]:
    """Run the named blocks in one bash script against a fresh daemon: (stdout, stderr)."""
    data_dir = tmp_path / "data"
    env = {
        "DOCBROKER_CONFIG": str(ROOT / "config" / "docbroker.dev.toml"),
        "DOCBROKER_DATA_DIR": str(data_dir),
        "DOCBROKER_DIRECTORY_SEED_FILE": str(ROOT / "config" / "directory" / "lai-chau.toml"),
    }
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
    keys = subprocess.run(
        [sys.executable, "-m", "broker", "keys", "init"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert keys.returncode == 0, keys.stderr
    if tls:
        env["DOCBROKER_HTTP_TLS"] = "true"
    ca_file = data_dir / "keys" / "ca.cert.pem" if tls else None
    daemon = Daemon(tmp_path / "daemon", env, ca_file=ca_file).start()
    examples = readme_examples()
    script = "set -euo pipefail\n" + "\n".join(examples[n] for n in names)
    script = script.replace("127.0.0.1:8080", f"127.0.0.1:{daemon.port}")
    script = script.replace("var/dev/", f"{data_dir}/")
    try:
        run = subprocess.run(
            ["bash", "-c", script],
            cwd=ROOT,
            env={**clean, "DOCBROKER_DATA_DIR": str(data_dir), "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        daemon.stop()
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    return run.stdout, run.stderr


def test_the_readme_examples_work_as_written(tmp_path: Path) -> None:
    out, err = run_examples(tmp_path, ["native", "cli", "sdk"])
    answers = json_objects(out)
    accepted = next(a for a in answers if "message_id" in a and "recipients" in a)
    state = next(a for a in answers if "document_id" in a and "refused" in a)
    (recipient,) = state["recipients"]
    assert recipient["route"] == "mailbox" and recipient["acknowledged_at"]
    assert [a["code"] for a in answers if a.get("status") in (401, 403)] == [
        "forbidden",
        "unauthenticated",
    ]
    assert "accepted as " + accepted["message_id"] in out + err  # the resend
    sdk = [a for a in answers if "ErrorCode" in a]
    assert sdk and all(a["status"] == "OK" for a in sdk), sdk
    listed = next(a for a in sdk if "data" in a and isinstance(a["data"], list))
    assert len(listed["data"]) == 2  # the 01 on acknowledgement and the office's 03
    assert sdk[-1]["count"] == 1  # one taken, one waiting


def test_the_readme_https_example_works_as_written(tmp_path: Path) -> None:
    out, _ = run_examples(tmp_path, ["https"], tls=True)
    answers = json_objects(out)
    assert not [a for a in answers if "code" in a], answers  # no problem answered
    listing = next(a for a in answers if "envelopes" in a)
    assert listing["envelopes"] == []
    assert "mailbox of 000.00.01.H35 is empty" in out  # the CLI with the same certificate
