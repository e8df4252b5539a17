"""The suite's broker's SASL_SSL and mTLS listeners (bin/kafka-local --secure), and the
ACLs of the README's `kafka-acls` commands, run as written (only the address and the
admin's client configuration are the local broker's)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.kafka_broker import KAFKA_LOCAL, KafkaBroker

ROOT = Path(__file__).resolve().parent.parent
README_ACLS = re.compile(r"<!-- kafka-acls:[^\n]*-->\n```sh\n(.*?)```", re.S)


def readme_acl_commands() -> list[list[str]]:
    """The README's kafka-acls commands, each as its arguments (continuations joined)."""
    block = README_ACLS.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert block, "README: no <!-- kafka-acls --> block"
    text = block.group(1).replace("\\\n", " ")
    return [shlex.split(line) for line in text.splitlines() if line.strip()]


def local_args(command: list[str]) -> list[str]:
    """A README command's arguments without the tool's name, its address and its admin
    configuration (bin/kafka-local acls gives the local broker's)."""
    assert command[0] == "kafka-acls", command
    args, skip = [], False
    for arg in command[1:]:
        if skip:
            skip = False
        elif arg in ("--bootstrap-server", "--command-config"):
            skip = True
        else:
            args.append(arg)
    return args


@dataclass(frozen=True)
class SecureKafka:
    """The SASL_SSL and mTLS listeners of the suite's broker."""

    bootstrap: str
    ssl_bootstrap: str
    ca_file: str
    data_dir: Path
    users: dict[str, dict[str, str]]

    @classmethod
    def of(cls, broker: KafkaBroker) -> SecureKafka | None:
        if broker.secure is None or broker.data_dir is None:
            return None
        s = broker.secure
        return cls(s["bootstrap"], s["ssl_bootstrap"], s["ca_file"], broker.data_dir, s["users"])

    def sasl(self, user: str = "docbroker", **more: Any) -> dict[str, Any]:
        """KafkaSettings fields: SASL_SSL (SCRAM-SHA-512) as `user`."""
        return {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": user,
            "sasl_password_file": self.users[user]["password_file"],
            "ssl_cafile": self.ca_file,
            **more,
        }

    def mtls(self, user: str = "docbroker") -> dict[str, Any]:
        """KafkaSettings fields: SSL with `user`'s client certificate."""
        return {
            "bootstrap_servers": self.ssl_bootstrap,
            "security_protocol": "SSL",
            "ssl_cafile": self.ca_file,
            "ssl_certfile": self.users[user]["certfile"],
            "ssl_keyfile": self.users[user]["keyfile"],
        }

    def acls(self, *args: str) -> str:
        """bin/kafka-local acls: kafka-acls as User:admin; its output."""
        proc = subprocess.run(
            [sys.executable, str(KAFKA_LOCAL), "acls", "--dir", str(self.data_dir), "--", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"kafka-acls {shlex.join(args)}:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def add_readme_acls(
        self, principal: str = "User:docbroker", prefix: str = "docbroker."
    ) -> None:
        """The README's commands (at once: each is a JVM's start), for another principal
        or prefix if asked."""
        commands = [
            [principal if a == "User:docbroker" else prefix if a == "docbroker." else a
             for a in local_args(command)]
            for command in readme_acl_commands()
        ]  # fmt: skip
        with ThreadPoolExecutor(len(commands)) as pool:
            list(pool.map(lambda args: self.acls(*args), commands))
