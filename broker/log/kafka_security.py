"""How the Kafka backend authenticates (TLS, mTLS, SASL/SCRAM) and how it says so
when the cluster refuses it: a failed login, or a missing ACL, is named with the
principal, the operation and the resource, and the `kafka-acls` command that allows
it. Secrets are read once, through broker.keys.secrets (its reader is handed in), and
go nowhere but aiokafka.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest

from broker.config import KafkaSettings
from broker.core.errors import BackendUnavailable, ConfigError

# broker.keys.secrets.read_secret(what, file=, env=): the caller hands it in (the log
# layer does not import the keys layer); without one, no secret is found.
SecretReader = Callable[..., bytes | None]


def no_secret(what: str, *, file: str = "", env: str = "") -> bytes | None:
    return None


REFUSAL_WINDOW = 15.0  # seconds /readyz names a refusal after it was last seen

# aiokafka's authorization errors: the kind of resource each is about.
RESOURCE_OF: dict[type[KafkaError], str] = {
    TopicAuthorizationFailedError: "topic",
    GroupAuthorizationFailedError: "group",
    TransactionalIdAuthorizationFailed: "transactional-id",
    ClusterAuthorizationFailedError: "cluster",
}
AUTHENTICATION_ERRORS = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    UnsupportedSaslMechanismError,
)


def client_security(s: KafkaSettings, read_secret: SecretReader) -> dict[str, Any]:
    """aiokafka's security keyword arguments; the secrets are read here (ConfigError
    naming the setting when one is missing)."""
    kw: dict[str, Any] = {"security_protocol": s.security_protocol}
    if s.security_protocol == "PLAINTEXT":
        return kw
    if s.ssl_keyfile and os.path.exists(s.ssl_keyfile):  # refused if others may read it
        read_secret("the Kafka client key (backend.kafka.ssl_keyfile)", file=s.ssl_keyfile)
    key_password = read_secret(
        "Kafka client key password", file=s.ssl_key_password_file, env=s.ssl_key_password_env
    )
    try:
        kw["ssl_context"] = create_ssl_context(
            cafile=s.ssl_cafile or None,
            certfile=s.ssl_certfile or None,
            keyfile=s.ssl_keyfile or None,
            password=key_password.decode() if key_password else None,
        )
    except (OSError, ssl.SSLError) as exc:  # never the password: only what failed
        raise ConfigError(
            f"backend.kafka: cannot load the TLS files (ssl_cafile {s.ssl_cafile!r}, "
            f"ssl_certfile {s.ssl_certfile!r}, ssl_keyfile {s.ssl_keyfile!r}): "
            f"{exc.__class__.__name__}"
            + (" (is ssl_keyfile encrypted? set ssl_key_password_file)" if s.ssl_keyfile else "")
        ) from None
    if s.security_protocol == "SASL_SSL":
        if not s.sasl_username:
            raise ConfigError("backend.kafka.sasl_username: required with SASL_SSL")
        password = read_secret(
            f"Kafka password of {s.sasl_username}",
            file=s.sasl_password_file,
            env=s.sasl_password_env,
        )
        if password is None:
            raise ConfigError(
                f"backend.kafka: SASL_SSL as {s.sasl_username} needs a password: set "
                f"sasl_password_file, or the environment variable {s.sasl_password_env}"
            )
        kw |= {
            "sasl_mechanism": s.sasl_mechanism,
            "sasl_plain_username": s.sasl_username,
            "sasl_plain_password": password.decode(),
        }
    return kw


def principal_of(s: KafkaSettings) -> str:
    """Who the brokers take this client for, as their ACLs name it."""
    if s.security_protocol == "SASL_SSL":
        return f"User:{s.sasl_username}"
    if s.security_protocol == "SSL" and s.ssl_certfile:
        # Kafka's default principal; a broker's ssl.principal.mapping.rules may shorten it
        return f"User:{subject_of(s.ssl_certfile)}"
    return "User:ANONYMOUS"


def subject_of(certfile: str) -> str:
    """The subject of the client certificate (the first of the file), as Kafka's
    default principal builder writes it (RFC 2253: most specific first)."""
    from cryptography import x509

    try:
        with open(certfile, "rb") as f:
            return x509.load_pem_x509_certificate(f.read()).subject.rfc4514_string()
    except (OSError, ValueError):
        return f"<the subject of {certfile}>"


async def check_login(s: KafkaSettings, kw: dict[str, Any]) -> None:
    """Log in to the first bootstrap server that answers, as every client will: a
    refused login is said so here (aiokafka's own clients would only say they could
    not bootstrap)."""
    if s.security_protocol == "PLAINTEXT":
        return
    failures = []
    for address in s.bootstrap_servers.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            conn = await create_conn(
                host, int(port), **{k: v for k, v in kw.items() if k != "bootstrap_servers"}
            )
        except AUTHENTICATION_ERRORS as exc:
            raise BackendUnavailable(
                f"Kafka at {address} refused the login of {principal_of(s)} "
                f"({s.security_protocol}, {s.sasl_mechanism}): {exc.__class__.__name__}: "
                f"{exc}; check sasl_username and the password (SCRAM users are made with "
                "kafka-configs --alter --entity-type users --add-config "
                f"'{s.sasl_mechanism}=[password=...]' --entity-name {s.sasl_username})"
            ) from None
        except ssl.SSLError as exc:
            raise BackendUnavailable(
                f"Kafka at {address}: the TLS handshake failed: {exc.reason or exc}; check "
                "ssl_cafile (the CA of the brokers' certificates), ssl_certfile and "
                "ssl_keyfile (a listener that requires a client certificate)"
            ) from None
        except (TimeoutError, OSError, KafkaError) as exc:
            _closed_without_credentials(s, address, exc)
            failures.append(f"{address}: {exc.__class__.__name__}: {exc}")
            continue
        try:
            await conn.send(MetadataRequest([]))  # a listener wanting a login closes here
        except (TimeoutError, KafkaError) as exc:
            _closed_without_credentials(s, address, exc)
            failures.append(f"{address}: {exc.__class__.__name__}: {exc}")
            continue
        finally:
            conn.close()
        return
    raise BackendUnavailable("Kafka: no bootstrap server answered (" + "; ".join(failures) + ")")


def _closed_without_credentials(s: KafkaSettings, address: str, exc: BaseException) -> None:
    """A TLS client with no certificate whose connection the broker closed: its
    listener wants a client certificate (mTLS) or a SASL login."""
    if (
        s.security_protocol == "SSL"
        and not s.ssl_certfile
        and isinstance(exc, KafkaConnectionError)
    ):
        raise BackendUnavailable(
            f"Kafka at {address} closed the connection of a TLS client without credentials "
            f"({exc}): its listener wants a client certificate (ssl_certfile, ssl_keyfile) "
            "or a SASL login (security_protocol SASL_SSL, sasl_username, the password)"
        ) from None


def acl_hint(principal: str, kind: str, operation: str, names: Iterable[str]) -> str:
    """The kafka-acls command that allows `operation` on these resources."""
    where = {
        "topic": "--topic",
        "group": "--group",
        "transactional-id": "--transactional-id",
    }.get(kind)
    target = " ".join(f"{where} {n}" for n in names) if where else "--cluster"
    prefixed = ", or a prefix of it with --resource-pattern-type prefixed" if where else ""
    return (
        f"kafka-acls --add --allow-principal {principal} --operation {operation} {target}"
        + prefixed
    )


def refusal(
    exc: BaseException,
    principal: str,
    operation: str,
    topics: Iterable[str] = (),
    *,
    group: str = "",
    txn_id: str = "",
) -> str | None:
    """The message for an authorization error (`operation` on `topics`; a group is
    Read, a transactional id Written, the cluster IdempotentWrite); None for any other."""
    kind = next((k for t, k in RESOURCE_OF.items() if isinstance(exc, t)), None)
    if kind is None:
        return None
    names: list[str] = {
        "topic": sorted(set(topics)),
        "group": [group] if group else [],
        "transactional-id": [txn_id] if txn_id else [],
        "cluster": [],
    }[kind]
    if kind != "topic":
        operation = {"group": "Read", "transactional-id": "Write"}.get(kind, "IdempotentWrite")
    on = f"{kind} {', '.join(names)}" if names else kind
    return (
        f"Kafka refused {principal} {operation} on {on}: add the ACL "
        f"({acl_hint(principal, kind, operation, names)}; README: Kafka: SASL_SSL, mTLS "
        "and ACLs)"
    )


class Refusals:
    """The refusals seen lately: /readyz names them while they go on."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def note(self, message: str) -> None:
        self._seen[message] = time.monotonic()

    def current(self) -> list[str]:
        now = time.monotonic()
        self._seen = {m: t for m, t in self._seen.items() if now - t < REFUSAL_WINDOW}
        return sorted(self._seen)
