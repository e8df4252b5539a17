"""Configuration: one TOML file, every key overridable by a DOCBROKER_* variable.

Settings are frozen dataclasses; each field documents itself (help text, bounds,
choices) so that the loader can check a file at start and name exactly what is
wrong, and `docbroker config show --defaults` prints an annotated example.
The environment variable of a key is its dotted path upper-cased with `_`:
`backend.kafka.bootstrap_servers` -> `DOCBROKER_BACKEND_KAFKA_BOOTSTRAP_SERVERS`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import socket
import tomllib
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NewType

from broker.core.errors import ConfigError

ByteSize = NewType("ByteSize", int)
"""An integer number of bytes; the file may also say "32 MiB", "500 KB", "2GiB"."""

ENV_PREFIX = "DOCBROKER_"
# Variables with the prefix that are not settings: read by the CLI client, the
# test suite and bin/ scripts. Anything else with the prefix must be a setting.
ENV_NOT_SETTINGS = (
    "DOCBROKER_CONFIG",
    "DOCBROKER_URL",
    "DOCBROKER_TOKEN",
    "DOCBROKER_CA_FILE",
    "DOCBROKER_CLIENT_CERT",
    "DOCBROKER_CLIENT_KEY",
    "DOCBROKER_AXIS_SECRET",
    "DOCBROKER_KEY_PASSPHRASE",
    "DOCBROKER_KAFKA_PASSWORD",  # backend.kafka.sasl_password_env's default
    "DOCBROKER_KAFKA_KEY_PASSWORD",  # backend.kafka.ssl_key_password_env's default
    "DOCBROKER_VENV",  # bin/_venv.sh: which virtualenv the bin/ scripts use
)
ENV_NOT_SETTINGS_PREFIXES = ("DOCBROKER_KAFKA_", "DOCBROKER_TEST_", "DOCBROKER_BENCH_")

MiB = 1024 * 1024


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Any = dataclasses.MISSING,
    min: float | None = None,
    max: float | None = None,
) -> Any:
    """A documented settings field with optional numeric bounds."""
    meta = {"help": help, "min": min, "max": max}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class HttpSettings:
    """The agency-facing HTTP API (also /metrics, /healthz, /readyz)."""

    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8080, "TCP port; 0 picks a free one", min=0, max=65535)
    shutdown_timeout: float = setting(
        30.0, "seconds in-flight requests get to finish on SIGTERM/SIGINT", min=0
    )
    read_your_writes_timeout: float = setting(
        5.0, "seconds an acknowledgement waits for the mailbox view to show it", min=0
    )
    max_long_poll: float = setting(60.0, "longest wait a mailbox listing may ask for", min=0)
    append_timeout: float = setting(
        10.0,
        "seconds a submission waits for its durable append; then 503 with Retry-After "
        "(the append may still land: a resend is then answered with its message id)",
        min=0.1,
    )
    tls: bool = setting(
        False,
        "serve HTTPS (TLS 1.2+, ECDHE with AES-GCM or ChaCha20-Poly1305); agencies may then "
        "also authenticate with client certificates",
    )
    allow_plain: bool = setting(
        False,
        "serve plain HTTP (tls = false) on an address other than loopback; without it "
        "docbroker refuses to start there: tokens and documents would cross the network "
        "in clear",
    )
    client_certificates: Literal["optional", "required"] = setting(
        "optional",
        "with tls: optional = a client may present a certificate (mTLS) or use a token; "
        "required = the TLS handshake demands a certificate chained to trust.ca_files",
    )
    hsts_max_age: int = setting(
        31536000,
        "with tls: the console's Strict-Transport-Security max-age, seconds; 0 = none",
        min=0,
    )
    sdk_plain_host: str = setting(
        "",
        "a second, plain-HTTP listener serving only the SDK surface (/vdxp), to the SDK "
        "systems allowed --plain-http; empty = none, 0.0.0.0 = every IPv4 address",
    )
    sdk_plain_port: int = setting(
        8081, "TCP port of the plain SDK listener; 0 picks a free one", min=0, max=65535
    )
    tls_certificate: str = setting(
        "", "PEM file: the server certificate and its chain; empty = <data_dir>/keys/tls.cert.pem"
    )
    tls_private_key: str = setting(
        "", "PEM file: the server's private key; empty = <data_dir>/keys/tls.key.pem"
    )
    request_timeout: float = setting(
        60.0, "seconds a client has to send a request body before it is dropped", min=1
    )
    idle_timeout: float = setting(
        15.0, "seconds a connection may sit without a complete request before it is closed", min=1
    )
    max_connections: int = setting(
        1000, "open connections at most; more are answered 503 and closed", min=1
    )
    rate_limit: float = setting(
        50.0, "requests per second each agency may make on average; 0 = no limit", min=0
    )
    rate_burst: int = setting(200, "requests an agency may make at once above the rate", min=1)
    agency_max_requests: int = setting(
        32,
        "requests one agency (token, client certificate or SDK system) may have under way "
        "at once, long polls included; more are answered 429 with Retry-After",
        min=1,
    )
    agency_max_long_polls: int = setting(
        8,
        "mailbox long polls (wait > 0) one agency may have waiting at once; more are "
        "answered 429 with Retry-After",
        min=1,
    )
    max_bytes_in_flight: ByteSize = setting(
        ByteSize(256 * MiB),
        "request body bytes all requests together may hold at once (at least "
        "limits.max_envelope_bytes); a request that would pass it is answered 503 with "
        "Retry-After",
        min=1,
    )


@dataclass(frozen=True)
class EmbeddedSettings:
    """The embedded backend: one SQLite file in WAL mode, no server."""

    path: str = setting("", "database file; empty = <data_dir>/log.sqlite")
    synchronous: Literal["full", "normal"] = setting(
        "full", "full: every commit is fsynced before an append is acknowledged"
    )
    session_timeout: float = setting(
        10.0, "seconds after which a silent consumer-group member loses its partitions", min=1
    )


@dataclass(frozen=True)
class KafkaSettings:
    """The Kafka backend (aiokafka): the production backend."""

    bootstrap_servers: str = setting("127.0.0.1:9092", "comma-separated host:port list")
    client_id: str = setting("docbroker", "client id sent to the brokers")
    replication_factor: int = setting(
        1, "replication factor of topics docbroker creates (a cluster: 3)", min=1
    )
    min_insync_replicas: int = setting(
        1, "min.insync.replicas of topics docbroker creates (a cluster: 2)", min=1
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = setting(
        "PLAINTEXT",
        "SASL_SSL: TLS and a SCRAM login (production); SSL: TLS, with ssl_certfile a client "
        "certificate (mTLS); PLAINTEXT: neither (development only)",
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = setting(
        "SCRAM-SHA-512", "SASL mechanism of SASL_SSL"
    )
    sasl_username: str = setting("", "SASL user (the ACLs' principal User:NAME); SASL_SSL needs it")
    sasl_password_file: str = setting(
        "", "file holding the SASL password (mode 0600 or 0640); empty = sasl_password_env"
    )
    sasl_password_env: str = setting(
        "DOCBROKER_KAFKA_PASSWORD", "environment variable holding the SASL password"
    )
    ssl_cafile: str = setting("", "CA bundle the brokers' certificates are checked against")
    ssl_certfile: str = setting("", "client certificate (PEM, then its chain) for mTLS")
    ssl_keyfile: str = setting("", "client key (PEM) for mTLS")
    ssl_key_password_file: str = setting("", "file holding ssl_keyfile's password, if encrypted")
    ssl_key_password_env: str = setting(
        "DOCBROKER_KAFKA_KEY_PASSWORD", "environment variable holding ssl_keyfile's password"
    )
    session_timeout_ms: int = setting(10000, "consumer group session timeout", min=1000)
    transaction_timeout_ms: int = setting(60000, "transaction timeout", min=1000)
    request_timeout_ms: int = setting(40000, "client request timeout", min=1000)
    max_batch_bytes: ByteSize = setting(
        ByteSize(1 * MiB),
        "records a producer packs into one batch per partition (aiokafka's 16 KiB "
        "put each 10 KB package in a batch of its own: a batch costs the broker and "
        "every reader as much as a full one)",
        min=16 * 1024,
    )
    tail_fetch_wait_ms: int = setting(
        50,
        "how long the fetch of a view or follower may wait for tail_fetch_min_bytes "
        "(fewer, fuller fetches under load; at most this much added lag)",
        min=0,
        max=1000,
    )
    tail_fetch_min_bytes: int = setting(
        64 * 1024,
        "the data a view's or follower's fetch waits for (up to tail_fetch_wait_ms)",
        min=1,
    )
    readers: int = setting(
        8, "consumers that read records by position (fetches) at once, per instance", min=1, max=64
    )


@dataclass(frozen=True)
class BackendSettings:
    """The durable log every record goes through."""

    type: Literal["embedded", "kafka"] = setting(
        "embedded", "embedded (SQLite, no server) or kafka"
    )
    topic_prefix: str = setting("docbroker.", "prefix of every topic name")
    partitions: int = setting(6, "partitions of topics docbroker creates", min=1, max=1000)
    embedded: EmbeddedSettings = setting(factory=EmbeddedSettings)
    kafka: KafkaSettings = setting(factory=KafkaSettings)


@dataclass(frozen=True)
class LimitsSettings:
    """Explicit size limits; Kafka topic and client limits follow them."""

    max_envelope_bytes: ByteSize = setting(
        ByteSize(32 * MiB), "largest envelope accepted", min=1024, max=1024 * MiB
    )
    max_depth: int = setting(
        32, "deepest element nesting accepted (edXML needs 9)", min=8, max=2048
    )
    max_elements: int = setting(
        100_000, "most XML elements in one envelope (bounds parser memory)", min=1000
    )
    max_recipients: int = setting(1000, "most To recipients in one document", min=1)
    max_attachments: int = setting(100, "most attachments in one document", min=0)


@dataclass(frozen=True)
class KeysSettings:
    """The broker's own key and certificate (it signs every forwarded envelope)."""

    private_key: str = setting(
        "", "PEM or PKCS#12 (.p12/.pfx) file; empty = <data_dir>/keys/broker.key.pem"
    )
    certificate: str = setting(
        "", "PEM file: the certificate, then its chain; empty = <data_dir>/keys/broker.cert.pem"
    )
    passphrase_file: str = setting("", "file holding the key's passphrase, if encrypted")
    passphrase_env: str = setting(
        "DOCBROKER_KEY_PASSPHRASE", "environment variable holding the passphrase, if encrypted"
    )
    expiry_warning_days: int = setting(
        30, "report certificates that expire within this many days", min=1
    )


@dataclass(frozen=True)
class TrustSettings:
    """Who is trusted to sign: CA certificates, CRLs, sender signature policies."""

    ca_files: tuple[str, ...] = setting(
        (), "PEM files of trusted CA certificates; empty = <data_dir>/keys/ca.cert.pem"
    )
    crl_files: tuple[str, ...] = setting(
        (),
        "CRL files (PEM or DER) of those CAs, read again when they change; empty with "
        "ca_files empty = <data_dir>/keys/ca.crl.pem (the development CA's)",
    )
    unchecked_revocation: Literal["refuse", "accept"] = setting(
        "refuse",
        "a certificate whose revocation cannot be checked (no current CRL of its issuer, "
        "no OCSP answer): refuse it where a signature is required and for client "
        "certificates (optional signatures record it), or accept it (recorded)",
    )
    crl_check_interval: float = setting(
        5.0, "seconds between two looks at the CRL files' modification time and size", min=0.1
    )
    ocsp: bool = setting(
        False,
        "ask the OCSP responder a certificate names (Authority Information Access) when "
        "its issuer has no current CRL",
    )
    ocsp_timeout: float = setting(5.0, "seconds an OCSP responder has to answer", min=0.1, max=60)
    ocsp_max_age: float = setting(
        3600.0,
        "seconds an OCSP answer is reused at most (until its nextUpdate when sooner)",
        min=1,
    )
    default_policy: Literal["required", "optional", "ignored"] = setting(
        "optional", "sender signatures: required, optional (verify and record) or ignored"
    )
    allow_legacy_sha1: bool = setting(False, "accept SHA-1 signatures from every sender")
    bind_by_subject_uid: bool = setting(
        True, "a certificate whose subject UID is the sender's code may sign for it"
    )


@dataclass(frozen=True)
class AuthSettings:
    """Credentials of callers: admin tokens, the SDK surface's secrets, replay and retries."""

    admin_tokens_file: str = setting(
        "", "SHA-256 hashes of admin tokens, one per line; empty = <data_dir>/keys/admin-tokens"
    )
    sdk_master_key_file: str = setting(
        "",
        "32-byte key the SDK systems' secrets are derived from; "
        "empty = <data_dir>/keys/sdk-master.key",
    )
    replay_window: float = setting(
        300.0, "seconds an SDK request's timestamp may differ from the broker's clock", min=1
    )
    idempotency_hours: float = setting(
        24.0, "hours an Idempotency-Key's answer is kept (per instance)", min=0
    )


@dataclass(frozen=True)
class ValidationSettings:
    """What an irregular package (warnings, no problem) does by default."""

    strict: bool = setting(
        False,
        "warnings refuse the packages of senders whose directory record does not say "
        "(an agency's `strict` decides for it)",
    )


@dataclass(frozen=True)
class DirectorySettings:
    """The agency directory (a compacted topic; `docbroker agencies` edits it)."""

    seed_file: str = setting(
        "", "TOML or CSV imported at start when the directory is empty (for development)"
    )


@dataclass(frozen=True)
class PipelineSettings:
    """The pipeline that checks and routes inbound envelopes."""

    group: str = setting("pipeline", "consumer group name (the topic prefix is added)")
    dedup_window_days: int = setting(
        30, "a new document with a DocumentId its sender used this recently is a duplicate", min=1
    )
    batch_size: int = setting(500, "most inbound records handled per transaction", min=1, max=10000)
    batch_bytes: ByteSize = setting(
        ByteSize(16 * MiB),
        "most bytes of inbound records handled per transaction (at least one record)",
        min=1,
    )
    workers: int = setting(0, "threads for blocking work; 0 = number of CPUs", min=0)
    processes: int = setting(
        -1,
        "worker processes for XML and crypto work: -1 = one per CPU when there are several, "
        "0 = none (threads only)",
        min=-1,
    )


@dataclass(frozen=True)
class ReportsSettings:
    """The statistics read model and `docbroker report`."""

    timezone: str = setting(
        "Asia/Ho_Chi_Minh", "the zone whose days the statistics count in (IANA name)"
    )


@dataclass(frozen=True)
class RetentionSettings:
    """What docbroker removes from the log, and when (README, Retention). Days may be
    fractions (a test prunes within seconds); 0 = keep forever."""

    enabled: bool = setting(True, "prune the log periodically by the rules below")
    interval: float = setting(3600.0, "seconds between two prunes", min=0.1)
    require_archive: bool = setting(
        True,
        "no delivered envelope, receipt or audit event leaves the log that no signed "
        "archive holds (the archive marks of each partition)",
    )
    mailbox_days: float = setting(
        30.0,
        "days a mailbox entry is kept after its acknowledgement (unacknowledged: always)",
        min=0,
    )
    inbound_days: float = setting(30.0, "days a submission is kept after it was processed", min=0)
    upstream_days: float = setting(
        30.0, "days an envelope for the national axis is kept after it was sent", min=0
    )
    receipts_days: float = setting(
        30.0, "days a receipt is kept (and while the entry it is about is)", min=0
    )
    rejected_days: float = setting(90.0, "days a dead letter is kept (replayable)", min=0)
    events_days: float = setting(0.0, "days audit events are kept; 0 = forever", min=0)


@dataclass(frozen=True)
class NationalAxisSettings:
    """The national document axis (VDXP): where to send what leaves the province, and
    where to fetch what comes in. Off until configured."""

    enabled: bool = setting(False, "send upstream records to the national axis and poll it")
    base_url: str = setting("", "the axis's base URL; operations are <base_url>/<operation>")
    system_id: str = setting("", "this province's XroadVnpt-systemid at the axis")
    secret_file: str = setting(
        "",
        "file holding the shared secret (or env DOCBROKER_AXIS_SECRET); "
        "empty = <data_dir>/keys/axis.secret",
    )
    ca_file: str = setting(
        "", "CA bundle to check the axis's HTTPS certificate; empty = system CAs"
    )
    request_timeout: float = setting(30.0, "seconds one request to the axis may take", min=1)
    retry_attempts: int = setting(
        8, "attempts to send one envelope before it is dead-lettered (axis refusals)", min=1
    )
    retry_base: float = setting(1.0, "seconds before the first retry; doubles each time", min=0)
    retry_max: float = setting(60.0, "longest wait between two attempts", min=0)
    breaker_failures: int = setting(
        5, "consecutive failures that open the circuit breaker (sending pauses)", min=1
    )
    breaker_reset: float = setting(
        30.0, "seconds the breaker stays open before one trial request", min=0.1
    )
    receive: bool = setting(True, "poll the axis for documents and statuses to this province")
    poll_interval: float = setting(5.0, "seconds between two polls of the axis", min=0.1)
    delivery_check_interval: float = setting(
        60.0,
        "seconds between two looks at getSentEdocList for what other provinces took; 0 = never",
        min=0,
    )
    directory_sync_interval: float = setting(
        3600.0,
        "seconds between two copies of the axis's agency list into the directory; 0 = never",
        min=0,
    )


@dataclass(frozen=True)
class LoggingSettings:
    """structlog output: JSON to files and pipes, readable on a terminal."""

    level: Literal["debug", "info", "warning", "error"] = setting("info", "lowest level shown")
    format: Literal["auto", "json", "console"] = setting(
        "auto", "auto = console on a terminal, JSON otherwise"
    )
    file: str = setting("", "append JSON lines to this file instead of stderr")


@dataclass(frozen=True)
class Settings:
    """All of docbroker's configuration."""

    data_dir: str = setting("var", "folder for the embedded log, read models and keys")
    instance: str = setting("", "name of this process in logs and metrics; empty = hostname")
    organ_id: str = setting(
        "000.99.99.H35", "this axis's own code: in each hop's TraceHeader and its status packages"
    )
    organ_name: str = setting(
        "Trục liên thông văn bản tỉnh Lai Châu", "the name in status packages docbroker makes"
    )
    http: HttpSettings = setting(factory=HttpSettings)
    backend: BackendSettings = setting(factory=BackendSettings)
    limits: LimitsSettings = setting(factory=LimitsSettings)
    keys: KeysSettings = setting(factory=KeysSettings)
    trust: TrustSettings = setting(factory=TrustSettings)
    validation: ValidationSettings = setting(factory=ValidationSettings)
    auth: AuthSettings = setting(factory=AuthSettings)
    directory: DirectorySettings = setting(factory=DirectorySettings)
    pipeline: PipelineSettings = setting(factory=PipelineSettings)
    national_axis: NationalAxisSettings = setting(factory=NationalAxisSettings)
    retention: RetentionSettings = setting(factory=RetentionSettings)
    reports: ReportsSettings = setting(factory=ReportsSettings)
    logging: LoggingSettings = setting(factory=LoggingSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def instance_name(self) -> str:
        return self.instance or socket.gethostname()

    @property
    def embedded_path(self) -> Path:
        return (
            Path(self.backend.embedded.path)
            if self.backend.embedded.path
            else (self.data_path / "log.sqlite")
        )

    @property
    def keys_dir(self) -> Path:
        return self.data_path / "keys"

    @property
    def trusted_ca_files(self) -> list[Path]:
        """The CAs agencies' certificates chain to: configured, or the development CA."""
        return [Path(p) for p in self.trust.ca_files] or [self.keys_dir / "ca.cert.pem"]

    @property
    def trusted_crl_files(self) -> list[Path]:
        """The CRLs of those CAs: configured, or the development CA's when it is the one
        trusted (`keys init` writes it)."""
        if self.trust.crl_files or self.trust.ca_files:
            return [Path(p) for p in self.trust.crl_files]
        return [self.keys_dir / "ca.crl.pem"]

    def key_file(self, configured: str, default_name: str) -> Path:
        """A configured key file, or its default name in the keys folder."""
        return Path(configured) if configured else self.keys_dir / default_name

    @property
    def max_record_bytes(self) -> int:
        """Largest record on any topic: an envelope plus room for stamps and headers."""
        return int(self.limits.max_envelope_bytes) + MiB


# --------------------------------------------------------------------------- loading


def load_settings(
    path: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read `path` (TOML; None = defaults only), apply the environment, check it all."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    errors: list[str] = []
    env_used: set[str] = set()
    settings = _build(Settings, data, (), environ, env_used, errors)
    for name in sorted(environ):
        if (
            name.startswith(ENV_PREFIX)
            and name not in env_used
            and name not in ENV_NOT_SETTINGS
            and not name.startswith(ENV_NOT_SETTINGS_PREFIXES)
        ):
            errors.append(f"{name}: unknown setting{_suggest(name, _all_env_names())}")
    if not errors:
        errors += _cross_checks(settings)
    if errors:
        where = f" in {path}" if path else ""
        raise ConfigError(f"configuration invalid{where}:\n  " + "\n  ".join(errors))
    return settings


def _cross_checks(settings: Settings) -> list[str]:
    """What single values cannot say: settings that need each other."""
    axis = settings.national_axis
    errors = []
    if axis.enabled:
        for name in ("base_url", "system_id"):
            if not getattr(axis, name):
                errors.append(f"national_axis.{name}: required when national_axis.enabled")
        if axis.base_url and not axis.base_url.startswith(("http://", "https://")):
            errors.append("national_axis.base_url: must start with http:// or https://")
    if settings.http.max_bytes_in_flight < settings.limits.max_envelope_bytes:
        errors.append(
            f"http.max_bytes_in_flight: {settings.http.max_bytes_in_flight} is less than "
            f"limits.max_envelope_bytes {settings.limits.max_envelope_bytes}: the largest "
            "envelope could never be taken"
        )
    kafka = settings.backend.kafka
    if settings.backend.type == "kafka" and kafka.min_insync_replicas > kafka.replication_factor:
        errors.append(
            f"backend.kafka.min_insync_replicas: {kafka.min_insync_replicas} is more than "
            f"backend.kafka.replication_factor {kafka.replication_factor}: Kafka would refuse "
            "every append"
        )
    if settings.backend.type == "kafka":
        errors += _kafka_security_checks(kafka)
    return errors


def _kafka_security_checks(kafka: KafkaSettings) -> list[str]:
    """Credentials the security protocol needs (the secrets themselves are read at start)."""
    errors = []
    if kafka.security_protocol == "SASL_SSL" and not kafka.sasl_username:
        errors.append(
            "backend.kafka.sasl_username: required with security_protocol SASL_SSL "
            "(and the password in sasl_password_file or $" + kafka.sasl_password_env + ")"
        )
    if bool(kafka.ssl_certfile) != bool(kafka.ssl_keyfile):
        errors.append("backend.kafka.ssl_certfile and ssl_keyfile: give both or neither")
    if kafka.security_protocol == "PLAINTEXT" and (kafka.ssl_certfile or kafka.sasl_username):
        errors.append(
            "backend.kafka.security_protocol: PLAINTEXT sends no credentials; the client "
            "certificate or SASL user given needs SSL or SASL_SSL"
        )
    return errors


def env_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + "_".join(path).upper()


def iter_fields(
    cls: type = Settings, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], dataclasses.Field[Any], Any]]:
    """Every leaf setting: (dotted path, field, type), depth first in declaration order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from iter_fields(tp, (*prefix, f.name))  # type: ignore[arg-type]
        else:
            yield (*prefix, f.name), f, tp


def _all_env_names() -> list[str]:
    return [env_name(p) for p, _f, _t in iter_fields()]


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _build(
    cls: type,
    data: Mapping[str, Any],
    prefix: tuple[str, ...],
    environ: Mapping[str, str],
    env_used: set[str],
    errors: list[str],
) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    dotted = ".".join(prefix)
    if not isinstance(data, Mapping):
        errors.append(f"{dotted}: expected a table, got {type(data).__name__}")
        data = {}
    for key in data:
        if key not in names:
            hint = _suggest(key, names)
            errors.append(f"{'.'.join((*prefix, key))}: unknown key{hint}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        path = (*prefix, f.name)
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, data.get(f.name, {}), path, environ, env_used, errors)  # type: ignore[arg-type]
            continue
        raw: Any = dataclasses.MISSING
        source = ".".join(path)
        if f.name in data:
            raw = data[f.name]
        env = env_name(path)
        if env in environ:
            env_used.add(env)
            raw, source = environ[env], env
            try:
                raw = _from_env_string(raw, tp)
            except ValueError as exc:
                errors.append(f"{source}: {exc}")
                continue
        if raw is dataclasses.MISSING:
            continue
        try:
            kwargs[f.name] = _coerce(raw, tp, f.metadata)
        except ValueError as exc:
            errors.append(f"{source}: {exc}")
    return cls(**kwargs)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000,
    "KB": 1000,
    "KIB": 1024,
    "KI": 1024,
    "M": 10**6,
    "MB": 10**6,
    "MIB": MiB,
    "MI": MiB,
    "G": 10**9,
    "GB": 10**9,
    "GIB": 1024**3,
    "GI": 1024**3,
    "T": 10**12,
    "TB": 10**12,
    "TIB": 1024**4,
    "TI": 1024**4,
}


def parse_byte_size(value: str | int) -> int:
    """`32 MiB` -> 33554432; plain integers are bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size in bytes, got {value!r}")
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    unit = (m.group(2) or "").upper() if m else None
    if not m or unit not in _UNITS:
        raise ValueError(f"expected a size such as 33554432 or '32 MiB', got {value!r}")
    return int(float(m.group(1)) * _UNITS[unit])


def _from_env_string(raw: str, tp: Any) -> Any:
    """Environment values are strings: give them the type the file would have."""
    if tp is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if tp is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
    if tp is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
    if typing.get_origin(tp) is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def _coerce(raw: Any, tp: Any, meta: Mapping[str, Any]) -> Any:
    if tp is ByteSize:
        value: Any = parse_byte_size(raw)
    elif tp is bool:
        if not isinstance(raw, bool):
            raise ValueError(f"expected true or false, got {raw!r}")
        value = raw
    elif tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"expected an integer, got {raw!r}")
        value = raw
    elif tp is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValueError(f"expected a number, got {raw!r}")
        value = float(raw)
    elif tp is str:
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {raw!r}")
        value = raw
    elif typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        if raw not in choices:
            raise ValueError(f"expected one of {', '.join(map(repr, choices))}, got {raw!r}")
        value = raw
    elif typing.get_origin(tp) is tuple:
        if not isinstance(raw, list | tuple) or not all(isinstance(x, str) for x in raw):
            raise ValueError(f"expected a list of strings, got {raw!r}")
        value = tuple(raw)
    else:
        raise TypeError(f"unsupported settings type {tp}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise ValueError(f"must be at least {lo:g}, got {value!r}")
    if hi is not None and value > hi:
        raise ValueError(f"must be at most {hi:g}, got {value!r}")
    return value


# --------------------------------------------------------------------------- showing


def to_mapping(obj: Any) -> dict[str, Any]:
    """Settings as nested plain dicts (for `config show --json`)."""
    return dataclasses.asdict(obj)


def render_toml(settings: Settings, *, annotate: bool = True) -> str:
    """Settings as TOML, each key with its help text and environment variable."""
    lines: list[str] = []
    current: tuple[str, ...] | None = None
    for path, f, _tp in iter_fields():
        table = path[:-1]
        if table != current:
            if lines:
                lines.append("")
            if table:
                lines.append(f"[{'.'.join(table)}]")
            current = table
        value: Any = settings
        for part in path:
            value = getattr(value, part)
        if annotate and f.metadata.get("help"):
            lines.append(f"# {f.metadata['help']} (env {env_name(path)})")
        lines.append(f"{path[-1]} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
