"""bin/kafka-local --secure: a development broker that authenticates and authorizes.

Beside its PLAINTEXT listener (inter-broker, controller and local tooling: its
clients are User:ANONYMOUS, a super user, so bind it to 127.0.0.1 only) the broker
gets a SASL_SSL listener (SCRAM-SHA-512 and -256) and an SSL listener that requires
a client certificate (mTLS); the principal of a certificate is its CN (User:NAME),
so one set of ACLs serves both. The StandardAuthorizer refuses whatever no ACL
allows (allow.everyone.if.no.acl.found=false); User:admin is a super user.

The material lives in <dir>/secure, every secret file mode 0600: a CA (ca.pem and
its key), the broker's PEM keystore (key and chain, for 127.0.0.1 and localhost),
and for each user a SCRAM password (NAME.password, created at format time with
kafka-storage --add-scram) and a client certificate (NAME.cert.pem, NAME.key.pem).
admin.properties is a Kafka tools client configuration for User:admin (kafka-acls
--command-config). Needs the `cryptography` package (the project's virtualenv): the
PKI is made as broker.keys.devpki makes the development keys.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "admin"
MECHANISM = "SCRAM-SHA-512"
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def secure_dir(data: Path) -> Path:
    return data / "secure"


def make_material(data: Path, users: list[str]) -> None:
    """The CA, the broker's keystore, each user's password and client certificate;
    what exists already is kept (a restart keeps its credentials)."""
    sys.path.insert(0, str(ROOT))
    from broker.keys import devpki  # cryptography: the project's virtualenv

    home = secure_dir(data)
    home.mkdir(parents=True, exist_ok=True)
    ca_file, ca_key = home / "ca.pem", home / "ca.key.pem"
    if not ca_file.exists():
        ca = devpki.make_ca("kafka-local development CA", key=devpki.new_key("ec"))
        _write_private(ca_key, devpki.key_pem(ca.key))
        ca_file.write_bytes(devpki.cert_pem(ca.certificate))
        server = devpki.issue(ca, "localhost", key_kind="ec", hosts=["127.0.0.1", "localhost"])
        _write_private(
            home / "broker.pem",
            devpki.key_pem(server.key) + devpki.cert_pem(server.certificate, ca.certificate),
        )
    ca = None
    for user in [ADMIN, *users]:
        if not (home / f"{user}.password").exists():
            _write_private(home / f"{user}.password", secrets.token_urlsafe(24).encode())
        if not (home / f"{user}.cert.pem").exists():
            ca = ca or _load_ca(devpki, ca_file, ca_key)
            client = devpki.issue(ca, user, key_kind="ec")
            _write_private(home / f"{user}.key.pem", devpki.key_pem(client.key))
            (home / f"{user}.cert.pem").write_bytes(devpki.cert_pem(client.certificate))
    password = (home / f"{ADMIN}.password").read_text().strip()
    _write_private(
        home / "admin.properties",
        (
            "security.protocol=SASL_SSL\n"
            f"sasl.mechanism={MECHANISM}\n"
            f'sasl.jaas.config={SCRAM_MODULE} required username="{ADMIN}" '
            f'password="{password}";\n'
            "ssl.truststore.type=PEM\n"
            f"ssl.truststore.location={ca_file}\n"
        ).encode(),
    )


def _load_ca(devpki, ca_file: Path, ca_key: Path):  # type: ignore[no-untyped-def]
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return devpki.Authority(
        load_pem_private_key(ca_key.read_bytes(), None),
        x509.load_pem_x509_certificate(ca_file.read_bytes()),
    )


def users_of(data: Path) -> list[str]:
    """The users whose credentials were made (admin first)."""
    names = sorted(p.name[: -len(".password")] for p in secure_dir(data).glob("*.password"))
    return [ADMIN, *(n for n in names if n != ADMIN)]


def scram_format_args(data: Path) -> list[str]:
    """kafka-storage format's --add-scram for every user (SCRAM lives in the metadata
    log: a user made after the format is added with kafka-configs instead)."""
    out = []
    for user in users_of(data):
        password = (secure_dir(data) / f"{user}.password").read_text().strip()
        for mechanism in MECHANISMS:
            out += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
    return out


def listener_properties(node: dict, data: Path) -> dict[str, str]:
    """The listeners and authorizer settings added to a node's server.properties."""
    home = secure_dir(data)
    port, cport = node["port"], node["controller_port"]
    sasl, ssl = node["sasl_port"], node["ssl_port"]
    jaas = {
        f"listener.name.sasl_ssl.{m.lower()}.sasl.jaas.config": f"{SCRAM_MODULE} required;"
        for m in MECHANISMS
    }
    return {
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport},"
        f"SASL_SSL://127.0.0.1:{sasl},SSL://127.0.0.1:{ssl}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sasl},"
        f"SSL://127.0.0.1:{ssl}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
        "SASL_SSL:SASL_SSL,SSL:SSL",
        "sasl.enabled.mechanisms": ",".join(MECHANISMS),
        **jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(home / "broker.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(home / "ca.pem"),
        "listener.name.ssl.ssl.client.auth": "required",
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+).*$/$1/,DEFAULT",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }


def public(data: Path, nodes: list[dict]) -> dict:
    """What `start` and `status` print of the secure listeners."""
    home = secure_dir(data)
    users = users_of(data)
    return {
        "bootstrap": ",".join(f"127.0.0.1:{n['sasl_port']}" for n in nodes),
        "ssl_bootstrap": ",".join(f"127.0.0.1:{n['ssl_port']}" for n in nodes),
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": MECHANISM,
        "ca_file": str(home / "ca.pem"),
        "admin": {
            "username": ADMIN,
            "password_file": str(home / f"{ADMIN}.password"),
            "command_config": str(home / "admin.properties"),
        },
        "users": {
            u: {
                "password_file": str(home / f"{u}.password"),
                "certfile": str(home / f"{u}.cert.pem"),
                "keyfile": str(home / f"{u}.key.pem"),
            }
            for u in users
            if u != ADMIN
        },
    }


def tool_args(state: dict) -> list[str]:
    """Where a Kafka tool run by `kafka-local acls` connects, as User:admin."""
    secure = state["secure"]
    return [
        "--bootstrap-server",
        secure["bootstrap"],
        "--command-config",
        secure["admin"]["command_config"],
    ]
