"""An agency that floods a daemon, run as its own process (several of them, each with
threads, as a misbehaving agency system would): long polls and submissions far beyond
its caps, each submission's body sent a while after its headers (as a slow uploader
does), a refusal retried after a short pause (not after its Retry-After). Every
answer is counted by status, and the refusals that came without a Retry-After.

    python -m tests.e2e.flood URL TOKEN SENDER RECIPIENT STOP_FILE POLLERS SUBMITTERS

floods while STOP_FILE + ".pause" does not exist (so that a test can measure with
and without the flood in turns), until STOP_FILE exists; then it prints one JSON
line: {"statuses": {status: n}, "without_retry_after": n, "errors": n}.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.edxml_samples import document

PAUSE = 0.5  # seconds a flooding thread waits after a refusal (half its Retry-After)
LONG_POLL = 2  # seconds each long poll asks to wait
SLOW = 1.0  # seconds each submission's body comes after its headers


class Tally:
    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.without_retry_after = 0
        self.errors = 0
        self.lock = threading.Lock()

    def answer(self, resp: http.client.HTTPResponse) -> bool:
        """Count an answer; whether it was a refusal."""
        refused = resp.status in (429, 503)
        with self.lock:
            self.statuses[resp.status] += 1
            if refused and not resp.getheader("Retry-After"):
                self.without_retry_after += 1
        return refused


class Flags:
    def __init__(self, stop_file: str) -> None:
        self.stop, self.pause = Path(stop_file), Path(stop_file + ".pause")


class Caller:
    """One persistent connection, made again when the server closed it."""

    def __init__(self, url: str, token: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.auth = {"Authorization": f"Bearer {token}"}
        self.conn: http.client.HTTPConnection | None = None

    def call(
        self, method: str, path: str, body: bytes | None = None, slow: float = 0.0
    ) -> http.client.HTTPResponse:
        """One request; `slow`: seconds between its headers and its body (a slow
        uploader: the request is under way meanwhile). A kept-alive connection the
        server closed meanwhile is made again, once, as HTTP clients do."""
        reused = self.conn is not None
        try:
            return self._call(method, path, body, slow)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            if not reused:
                raise
            return self._call(method, path, body, slow)

    def _call(
        self, method: str, path: str, body: bytes | None, slow: float
    ) -> http.client.HTTPResponse:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {**self.auth, **({"Content-Type": "application/xml"} if body else {})}
        try:
            self.conn.putrequest(method, path)
            for name, value in {**headers, "Content-Length": str(len(body or b""))}.items():
                self.conn.putheader(name, value)
            self.conn.endheaders()
            time.sleep(slow)
            if body:
                self.conn.send(body)
            resp = self.conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.will_close:
            self.close()
        return resp

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run(caller: Caller, tally: Tally, flags: Flags, request: Callable[[], tuple]) -> None:
    while not flags.stop.exists():
        if flags.pause.exists():
            time.sleep(0.05)
            continue
        try:
            refused = tally.answer(caller.call(*request()))
        except (OSError, http.client.HTTPException):
            with tally.lock:
                tally.errors += 1
            refused = True
        if refused:
            time.sleep(PAUSE)
    caller.close()


def main(argv: list[str]) -> None:
    url, token, sender, recipient, stop_file, pollers, submitters = argv
    tally, flags, numbers = Tally(), Flags(stop_file), iter(range(10**9))
    lock = threading.Lock()

    def poll() -> tuple:
        return ("GET", f"/v1/mailboxes/{sender}/envelopes?wait={LONG_POLL}")

    def submit() -> tuple:
        with lock:
            n = next(numbers)
        doc_id = f"{sender},2026/12/02,{os.getpid()}.{n}/FLOOD"
        return ("POST", "/v1/envelopes", document(sender, (recipient,), doc_id), SLOW)

    threads = [
        threading.Thread(target=run, args=(Caller(url, token), tally, flags, what))
        for what, count in ((poll, int(pollers)), (submit, int(submitters)))
        for _ in range(count)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = {
        "statuses": {str(k): v for k, v in tally.statuses.items()},
        "without_retry_after": tally.without_retry_after,
        "errors": tally.errors,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
