"""The console's pure parts: the message catalogue, the sessions, the redirect target."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adapters.http_api.console import guard
from adapters.http_api.console.catalogue import MESSAGES
from adapters.http_api.console.i18n import STATUS_NAMES, Translator, choose
from adapters.http_api.console.sessions import (
    ANONYMOUS_SECONDS,
    IDLE_SECONDS,
    LIFETIME_SECONDS,
    Sessions,
)

TEMPLATES = Path(guard.__file__).parent / "templates"


class TestCatalogue:
    def test_every_message_has_vietnamese_and_english(self) -> None:
        for key, texts in MESSAGES.items():
            assert set(texts) == {"vi", "en"}, key
            assert texts["vi"].strip() and texts["en"].strip(), key

    def test_every_key_a_template_names_is_in_the_catalogue(self) -> None:
        used = set()
        for template in TEMPLATES.glob("*.html"):
            used |= set(re.findall(r't\("([a-z_.0-9-]+)"[,)]', template.read_text()))
        assert used and used <= set(MESSAGES), sorted(used - set(MESSAGES))

    def test_an_unknown_key_raises_rather_than_shows_a_key(self) -> None:
        with pytest.raises(KeyError):
            Translator("vi")("no.such.key")

    def test_status_names_are_vietnamese_with_the_meaning_beside_in_english(self) -> None:
        assert set(STATUS_NAMES) == {"01", "02", "03", "04", "05", "06", "13", "15", "16"}
        assert Translator("vi").status("06") == "06 Hoàn thành"
        assert Translator("en").status("06") == "06 Hoàn thành — completed"
        assert Translator("en").level("huyện") == "huyện — district"
        assert Translator("vi").level("xã") == "xã"

    def test_the_language_is_the_query_then_the_cookie_then_vietnamese(self) -> None:
        assert choose("en", "vi") == "en"
        assert choose(None, "en") == "en"
        assert choose("fr", None) == "vi"


class TestSessions:
    def test_a_login_replaces_the_forms_session_with_a_new_id_and_token(self) -> None:
        sessions = Sessions()
        form = sessions.start(0)
        admin = sessions.login(form, 1, "admin")
        assert admin.admin and admin.id != form.id and admin.csrf != form.csrf
        assert sessions.get(form.id, 2) is None

    def test_sessions_expire_when_idle_and_after_their_lifetime(self) -> None:
        sessions = Sessions()
        a = sessions.login(sessions.start(0), 0, "admin")
        assert sessions.get(a.id, IDLE_SECONDS - 1) is not None
        assert sessions.get(a.id, 2 * IDLE_SECONDS) is None, "idle too long"
        b = sessions.login(sessions.start(0), 0, "admin")
        t = 0.0
        while t < LIFETIME_SECONDS - IDLE_SECONDS:
            t += IDLE_SECONDS - 1
            assert sessions.get(b.id, t) is not None
        assert sessions.get(b.id, LIFETIME_SECONDS + 1) is None, "past its lifetime"
        form = sessions.start(0)
        assert sessions.get(form.id, ANONYMOUS_SECONDS + 1) is None

    def test_the_csrf_token_must_be_the_sessions(self) -> None:
        s = Sessions().start(0)
        assert s.csrf_ok(s.csrf)
        assert not s.csrf_ok(None) and not s.csrf_ok("") and not s.csrf_ok(s.csrf[:-1])

    def test_the_number_of_sessions_is_bounded(self) -> None:
        sessions = Sessions(limit=2, forms=3)
        first = sessions.login(sessions.start(0), 0, "admin")
        for _ in range(3):
            sessions.login(sessions.start(0), 0, "admin")
        assert sessions.get(first.id, 0) is None, "the least recently used went"
        assert len(sessions) == 2

    def test_login_forms_by_the_thousand_do_not_log_anybody_out(self) -> None:
        """An unauthenticated client can open login forms, each a session: they evict
        only one another, never a logged-in session."""
        sessions = Sessions(limit=2, forms=3)
        admin = sessions.login(sessions.start(0), 0, "admin")
        forms = [sessions.start(0) for _ in range(50)]
        assert sessions.get(admin.id, 1) is not None
        assert sessions.get(forms[0].id, 1) is None and sessions.get(forms[-1].id, 1)


def test_after_login_only_a_console_page_of_this_server() -> None:
    assert guard.safe_next("/console/agencies") == "/console/agencies"
    for bad in ("https://evil.example/", "//evil.example/console/", "/console//evil", None):
        assert guard.safe_next(bad) == "/console/"
