"""Real `docbroker serve` processes for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from broker.cli.client import ApiProblem, DocbrokerClient, Response
from tests.credentials import daemon_tokens
from tests.edxml_samples import sender_of

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TokenBook:
    """API tokens of one deployment: they live in its log, so its daemons share them."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.tokens: dict[str, str] = {}
        self.seen: set[tuple[str, int]] = set()  # (agency, daemon port) known to work
        # Directory changes are read-modify-write: tokens are made one change at a time.
        self.lock = threading.RLock()

    def token(self, agency: str) -> str:
        return self.grant([agency])[agency]

    def grant(self, agencies: Iterable[str]) -> dict[str, str]:
        """Tokens for these agencies (made in one directory change where missing)."""
        with self.lock:
            missing = [a for a in agencies if a not in self.tokens]
            if missing:
                self.tokens.update(daemon_tokens(self.env, missing))
            return self.tokens


class RightfulClient:
    """docbroker's own client presenting, in each call, the token of the agency the
    call concerns: the sender of a submission, the owner of a mailbox."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def submit(self, data: bytes, **kw: Any) -> dict[str, Any]:
        sender = sender_of(data) or "000.00.00.H35"  # a broken package names nobody
        return self.daemon.client_for(sender).submit(data, **kw)

    def inbox(self, agency: str, **kw: Any) -> dict[str, Any]:
        return self.daemon.client_for(agency).inbox(agency, **kw)

    def fetch(self, agency: str, message_id: str) -> Response:
        return self.daemon.client_for(agency).fetch(agency, message_id)

    def ack(self, agency: str, message_id: str) -> dict[str, Any]:
        return self.daemon.client_for(agency).ack(agency, message_id)


class Daemon:
    """One daemon process; logs (JSON lines) go to a file for post-mortems."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        name: str = "docbroker",
        tokens: TokenBook | None = None,
        ca_file: Path | None = None,
    ) -> None:
        """`ca_file`: the daemon serves HTTPS (DOCBROKER_HTTP_TLS) with a certificate
        from this CA."""
        self.workdir = workdir
        self.tls = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        self.port = int(env.get("DOCBROKER_HTTP_PORT") or free_port())
        self.env = {
            **env,
            "DOCBROKER_HTTP_PORT": str(self.port),
            "DOCBROKER_LOGGING_FORMAT": "json",
            "DOCBROKER_INSTANCE": name,
        }
        self.tokens = tokens or TokenBook(env)
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def client(self) -> RightfulClient:
        """A client acting, in each call, as the agency the call concerns."""
        return RightfulClient(self)

    def client_for(self, agency: str, timeout: float = 30) -> DocbrokerClient:
        """docbroker's client with `agency`'s token, once this daemon accepts it."""
        with self.tokens.lock:
            token = self.tokens.token(agency)
            if (agency, self.port) not in self.tokens.seen:
                self._wait_accepted(token)
                self.tokens.seen.add((agency, self.port))
        return DocbrokerClient(self.url, timeout=timeout, token=token)

    def _wait_accepted(self, token: str) -> None:
        """A new token works once this daemon has followed the directory change."""
        deadline = time.monotonic() + 20
        while True:
            try:
                DocbrokerClient(self.url, timeout=5, token=token).agencies()
                return
            except ApiProblem as exc:
                if exc.status != 401 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def start(self, timeout: float = 60, *, own_group: bool = False) -> Daemon:
        """`own_group`: the daemon leads a process group of its own (with its worker
        processes), as a shell's foreground job does: os.killpg reaches them all."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCBROKER_")}
        env.update(self.env)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "broker", "serve"],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0 if own_group else None,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(
                    f"{self.url}/readyz", timeout=2, context=self.tls
                ) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"daemon not ready within {timeout} s:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out
