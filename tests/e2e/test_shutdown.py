"""How a real `docbroker serve` stops, and how it refuses to start.

SIGINT (Ctrl-C: the terminal signals the whole process group, worker processes
included) and SIGTERM (systemd's KillMode=mixed: the main process only; a plain
`kill` of the group: every process) each stop it with status 0 and not one
traceback from it or its pipeline workers; a long poll in flight is answered at
once instead of holding the stop for its `wait`; systemd is told READY=1 and
STOPPING=1; an address it cannot listen on is one line and status 2, before
anything starts. On the embedded backend: what is tested here is the process,
not the log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DaemonFactory
from tests.e2e.daemon import Daemon
from tests.e2e.faults import pipeline_workers, readyz
from tests.e2e.test_walking_skeleton import wait_for_entries
from tests.edxml_samples import document

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("backend", ["embedded"])]

RECIPIENT = "000.00.07.H35"
WORKERS = {"DOCBROKER_PIPELINE_PROCESSES": "2"}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_no_traceback(daemon: Daemon) -> None:
    """Nothing in the daemon's output (its workers write to the same stderr) is a
    traceback or a KeyboardInterrupt."""
    output = daemon.logs()
    for mark in ("Traceback", "KeyboardInterrupt", '"level": "error"', '"exception"'):
        assert mark not in output, output[-4000:]


@pytest.fixture
def own_group(tmp_path: Path, daemon_env: dict[str, str]) -> Iterator[Daemon]:
    """A daemon leading its own process group, as a shell's foreground job."""
    daemon = Daemon(tmp_path / "grouped", {**daemon_env, **WORKERS})
    daemon.start(own_group=True)
    assert daemon.proc is not None
    workers = pipeline_workers(daemon.proc.pid)
    try:
        yield daemon
    finally:
        daemon.kill()
        for pid in workers:  # never left behind, even when the test fails
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


class TestStopSignals:
    @pytest.mark.parametrize(
        ("sig", "whom"),
        [(signal.SIGINT, "group"), (signal.SIGTERM, "main"), (signal.SIGTERM, "group")],
        ids=["SIGINT-to-the-group (Ctrl-C)", "SIGTERM-to-the-daemon", "SIGTERM-to-the-group"],
    )
    def test_each_stop_signal_ends_it_cleanly(
        self, own_group: Daemon, sig: signal.Signals, whom: str
    ) -> None:
        """After work went through the worker processes, the signal stops the daemon
        with status 0 within seconds, its workers end with it, and no traceback is
        printed by any of them."""
        daemon = own_group
        assert daemon.proc is not None
        workers = pipeline_workers(daemon.proc.pid)
        assert len(workers) == 2, workers
        daemon.client().submit(document(recipients=(RECIPIENT,)))
        wait_for_entries(daemon, RECIPIENT, 1)
        started = time.monotonic()
        if whom == "group":
            os.killpg(daemon.proc.pid, sig)
        else:
            daemon.proc.send_signal(sig)
        assert daemon.proc.wait(30) == 0, daemon.logs()[-4000:]
        assert time.monotonic() - started < 10
        deadline = time.monotonic() + 5
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if alive(w)]
        assert_no_traceback(daemon)
        events = [e.get("event") for e in daemon.log_events()]
        assert events[-1] == "docbroker stopped"
        assert "pipeline worker process died (seen by the watchdog)" not in events


class TestLongPollAtShutdown:
    def test_a_long_poll_in_flight_does_not_hold_the_stop(self, daemons: DaemonFactory) -> None:
        """A listing with wait=30 in flight at SIGTERM is answered (200, nothing new)
        at once, and the daemon has stopped within a few seconds, not 30."""
        daemon = daemons(**WORKERS)
        client = daemon.client_for(RECIPIENT, timeout=60)
        answer: dict[str, Any] = {}

        def poll() -> None:
            answer["page"] = client.inbox(RECIPIENT, wait=30)
            answer["at"] = time.monotonic()

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(1.0)  # the poll is waiting in the daemon
        assert poller.is_alive()
        assert daemon.proc is not None
        signalled = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(30) == 0
        stopped = time.monotonic() - signalled
        poller.join(30)
        assert answer["page"]["envelopes"] == []
        assert answer["at"] - signalled < 3
        assert stopped < 5, f"the stop took {stopped:.1f} s"
        assert_no_traceback(daemon)


class TestSystemdNotify:
    def test_ready_once_ready_and_stopping_on_sigterm(
        self, tmp_path: Path, daemon_env: dict[str, str]
    ) -> None:
        """Under a Type=notify unit: READY=1 comes when /readyz answers 200, STOPPING=1
        when the stop begins (sd_notify over the NOTIFY_SOCKET datagram socket)."""
        with (
            tempfile.TemporaryDirectory(prefix="notify") as short,  # sun_path: 108 bytes
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sd,
        ):
            address = f"{short}/notify.sock"
            sd.bind(address)
            sd.settimeout(30)
            daemon = Daemon(tmp_path / "notified", {**daemon_env, "NOTIFY_SOCKET": address})
            try:
                daemon.start()
                messages = []
                while not any("READY=1" in m for m in messages):
                    messages.append(sd.recv(4096).decode())
                assert readyz(daemon.url)[0] == 200
                assert f"STATUS=serving on {daemon.url}" in messages[-1].splitlines()
                assert daemon.stop(signal.SIGTERM) == 0
                assert sd.recv(4096).decode().splitlines()[0] == "STOPPING=1"
            finally:
                daemon.kill()


def serve_once(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "broker", "serve"],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestCannotListen:
    def test_a_port_in_use_is_one_line_and_status_2_before_anything_starts(
        self, tmp_path: Path, daemon_env: dict[str, str]
    ) -> None:
        """Another process listens on the port: one line on stderr, status 2, and
        nothing started (no log line, no log or view file written, hence no pipeline
        and no worker process)."""
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            done = serve_once({**daemon_env, **WORKERS, "DOCBROKER_HTTP_PORT": str(port)}, tmp_path)
        assert done.returncode == 2
        assert done.stdout == ""
        assert done.stderr.splitlines() == [
            f"docbroker: config-invalid: cannot listen on 127.0.0.1:{port}: address already in use"
        ]
        data = Path(daemon_env["DOCBROKER_DATA_DIR"])
        assert sorted(p.name for p in data.iterdir()) == ["keys"]

    def test_an_address_not_of_this_host_is_one_line_and_status_2(
        self, tmp_path: Path, daemon_env: dict[str, str]
    ) -> None:
        """http.host names an address this machine does not have (TEST-NET-1)."""
        env = {
            **daemon_env,
            "DOCBROKER_HTTP_HOST": "192.0.2.1",
            "DOCBROKER_HTTP_PORT": "8080",
            "DOCBROKER_HTTP_ALLOW_PLAIN": "true",
        }
        done = serve_once(env, tmp_path)
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            "docbroker: config-invalid: cannot listen on 192.0.2.1:8080: "
            "cannot assign requested address"
        ]
