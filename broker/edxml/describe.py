"""A human-readable account of an envelope (for `docbroker inspect`)."""

from __future__ import annotations

from broker.edxml.model import Envelope, Kind


def _size(n: int | None) -> str:
    if n is None:
        return "not encoded in the package"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def describe(env: Envelope) -> str:
    lines: list[str] = []

    def row(label: str, value: object) -> None:
        if value not in (None, "", ()):
            lines.append(f"{label:<16}{value}")

    row(
        "kind",
        env.kind.value + (f" ({env.status_form} form)" if env.status_form == "Status" else ""),
    )
    row("from", f"{env.sender_id} {env.sender.organ_name}".rstrip())
    if env.kind is Kind.STATUS:
        code = env.status_code
        row("status", f"{code.value} {code.meaning}" if code else "(unknown)")
        row("description", env.status_description)
        row("timestamp", env.status_timestamp)
    for to in env.recipients:
        row("to", f"{to.organ_id} {to.organ_name}".rstrip())
    for rf in env.response_for:
        row("response for", f"{rf.document_id} (to {rf.organ_id})")
    row("document id", env.document_id)
    row("code", env.code)
    if env.promulgation:
        row("promulgated", f"{env.promulgation.place} {env.promulgation.date or ''}".strip())
    if env.document_type:
        row("type", env.document_type.name or env.document_type.type)
    row("subject", env.subject)
    row("due", env.due_date)
    if env.other:
        row("priority", f"{int(env.other.priority)} {env.other.priority.name.lower()}")
    if env.business:
        b = env.business
        targets = f" of {', '.join(b.targets)}" if b.targets else ""
        row("business", f"{b.kind.value} {b.kind.name.lower()}{targets}")
        for change in b.receiver_changes:
            row("  recipient", f"{'+' if change.added else '-'} {change.organ_id}")
    for hop in env.trace:
        row("trace", f"{hop.organ_id or '(nobody)'} at {hop.timestamp or '(no time)'}")
    for a in env.attachments:
        row(
            "attachment",
            f"{a.name or a.content_id} ({a.content_type or '?'}, {_size(a.decoded_size)})",
        )
    for s in env.signatures:
        alg = s.signature_method.rsplit("#", 1)[-1] or "?"
        row(
            "signature",
            f"{s.namespace} {alg} at {s.path}" + (" with certificate" if s.has_certificate else ""),
        )
    return "\n".join(lines)
