"""Console sessions, kept by the server: the browser holds only an opaque random id.

A session starts before login (so that the login form carries a CSRF token too) and
is replaced by a new one, with a new id and a new token, when an admin token is
accepted: an id planted before login is worth nothing after it. Sessions end on
logout, after `IDLE_SECONDS` without a request, and `LIFETIME_SECONDS` after login
in any case. They live in this process's memory: a restart logs everybody out, and
behind a load balancer the console needs sticky sessions.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, replace

COOKIE = "docbroker_console"
IDLE_SECONDS = 30 * 60
LIFETIME_SECONDS = 8 * 3600
ANONYMOUS_SECONDS = 15 * 60  # a login form left open
# Beyond these, the least recently used go first. Login forms and logged-in sessions
# are counted apart: whoever opens login forms by the thousand evicts only login forms.
MAX_SESSIONS = 1_000
MAX_FORMS = 10_000


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    csrf: str
    admin: bool  # logged in with an admin token
    started_at: float
    seen_at: float
    label: str = ""  # who logged in, as far as the console can say: never the token

    def expired(self, now: float) -> bool:
        if self.admin:
            return now - self.seen_at > IDLE_SECONDS or now - self.started_at > LIFETIME_SECONDS
        return now - self.started_at > ANONYMOUS_SECONDS

    def csrf_ok(self, presented: str | None) -> bool:
        """The form's token is this session's (compared in constant time)."""
        return bool(presented) and hmac.compare_digest(self.csrf, str(presented))


class Sessions:
    """The sessions of this process, by id; the times are passed in (seconds)."""

    def __init__(self, limit: int = MAX_SESSIONS, forms: int = MAX_FORMS) -> None:
        self._by_id: OrderedDict[str, Session] = OrderedDict()  # logged in
        self._forms: OrderedDict[str, Session] = OrderedDict()  # login forms
        self.limit = limit
        self.forms_limit = forms

    def __len__(self) -> int:
        return len(self._by_id) + len(self._forms)

    def start(self, now: float, *, admin: bool = False, label: str = "") -> Session:
        session = Session(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), admin, now, now, label
        )
        kept, limit = (self._by_id, self.limit) if admin else (self._forms, self.forms_limit)
        kept[session.id] = session
        while len(kept) > limit:
            kept.popitem(last=False)
        return session

    def get(self, session_id: str | None, now: float) -> Session | None:
        """The live session with this id (its idle time restarts), or None."""
        if not session_id:
            return None
        kept = self._by_id if session_id in self._by_id else self._forms
        session = kept.get(session_id)
        if session is None:
            return None
        if session.expired(now):
            del kept[session_id]
            return None
        session = replace(session, seen_at=now)
        kept[session_id] = session
        kept.move_to_end(session_id)
        return session

    def login(self, anonymous: Session, now: float, label: str) -> Session:
        """The logged-in session that replaces the login form's."""
        self.end(anonymous.id)
        return self.start(now, admin=True, label=label)

    def end(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)
        self._forms.pop(session_id, None)
