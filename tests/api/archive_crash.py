"""`python archive_crash.py STEP ARGS…`: `docbroker ARGS…`, killed with SIGKILL right
after the archive writer's step STEP (written, renamed, marked) the first time."""

from __future__ import annotations

import os
import signal
import sys

import broker.cli.archive as archive_cli
from broker.cli import main

STEP = sys.argv[1]


def crash(name: str) -> None:
    if name == STEP:
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    archive_cli.step = crash  # the writer calls it through the command module
    import broker.cli.archive_files as files

    files.step = crash
    sys.argv = ["docbroker", *sys.argv[2:]]
    main()
