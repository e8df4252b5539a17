"""Routing as a pure function: each recipient -> a mailbox, upstream, or refused.

Recipients are routed independently: one bad recipient does not stop the
others. A recipient is found by either code form; a local, active agency gets
the envelope in its mailbox (under its QĐ 20/2020 code), an agency outside the
province goes upstream to the national axis, anything else is refused with a
reason the sender receives in a status 02.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from broker.directory.book import Directory
from broker.edxml.model import Envelope


class Route(StrEnum):
    MAILBOX = "mailbox"
    UPSTREAM = "upstream"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Decision:
    requested: str  # the code as the envelope names it
    route: Route
    agency: str = ""  # the directory code it resolved to
    code: str = ""  # problem code when refused
    reason: str = ""


def route_envelope(env: Envelope, directory: Directory) -> list[Decision]:
    """A decision per distinct recipient, in the envelope's order."""
    sender = directory.find(env.sender_id)
    sender_code = sender.code if sender else env.sender_id
    decisions: list[Decision] = []
    seen: set[str] = set()
    for requested in env.recipient_ids:
        agency = directory.find(requested)
        if agency is None:
            decisions.append(
                Decision(
                    requested,
                    Route.REFUSED,
                    code="unknown-recipient",
                    reason=f"{requested} is not in the agency directory",
                )
            )
            continue
        if agency.code in seen:
            continue  # the same agency named by both of its codes
        seen.add(agency.code)
        if agency.code == sender_code:
            decisions.append(
                Decision(
                    requested,
                    Route.REFUSED,
                    agency.code,
                    "recipient-is-sender",
                    f"{requested} is the sender itself",
                )
            )
        elif not agency.active:
            decisions.append(
                Decision(
                    requested,
                    Route.REFUSED,
                    agency.code,
                    "recipient-suspended",
                    f"{agency.code} ({agency.name}) is suspended",
                )
            )
        elif agency.local:
            decisions.append(Decision(requested, Route.MAILBOX, agency.code))
        else:
            decisions.append(Decision(requested, Route.UPSTREAM, agency.code))
    return decisions
