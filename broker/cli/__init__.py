"""The `docbroker` command: one module per command group, registered on the group in
base.

Imports anything below it (the daemon, adapters for the simulator command, the
runtime, views, keys); nothing imports it but `python -m broker` and the console
script.
"""

from broker.cli import (  # noqa: F401  (each registers its commands on cli.base's groups)
    access,
    agencies,
    archive,
    audit,
    backup,
    documents,
    envelopes,
    keys,
    mailbox,
    rejected,
    report,
    serve,
    status,
)
from broker.cli.base import cli, main, one_off_instance

__all__ = ["cli", "main", "one_off_instance"]
