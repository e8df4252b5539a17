"""The console's words: one catalogue, Vietnamese first, English available. Pure.

Every string a page shows comes from `MESSAGES` through `Translator`, so a page
cannot be half translated: an unknown key raises (and a test renders every page in
both languages). The domain's own Vietnamese terms (the QCVN 102 status names, the
levels of agencies) keep their Vietnamese name in English too, with the meaning
beside it: that is how officials and the national axis name them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from adapters.http_api.console.catalogue import MESSAGES

LANGUAGES = ("vi", "en")
DEFAULT = "vi"

# QCVN 102:2016 StatusCode: (Vietnamese name, meaning).
STATUS_NAMES: Mapping[str, tuple[str, str]] = {
    "01": ("Đã đến", "arrived"),
    "02": ("Từ chối tiếp nhận", "refused on receipt"),
    "03": ("Đã tiếp nhận", "received"),
    "04": ("Phân công", "assigned"),
    "05": ("Đang xử lý", "being processed"),
    "06": ("Hoàn thành", "completed"),
    "13": ("Lấy lại", "recalled"),
    "15": ("Đồng ý cập nhật", "update agreed"),
    "16": ("Từ chối cập nhật", "update refused"),
}

# Agency levels as the directory labels them: (Vietnamese, meaning).
LEVEL_NAMES: Mapping[str, tuple[str, str]] = {
    "tỉnh": ("tỉnh", "province"),
    "sở": ("sở", "provincial department"),
    "huyện": ("huyện", "district"),
    "xã": ("xã", "commune"),
    "hội": ("hội", "association"),
}


def choose(query: str | None, cookie: str | None) -> str:
    """The page's language: `?lang=` first, then the remembered one, then Vietnamese."""
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return candidate
    return DEFAULT


@dataclass(frozen=True, slots=True)
class Translator:
    """`t(key, **values)`: the message in this language, with `{name}`s filled in."""

    lang: str

    def __call__(self, key: str, **values: object) -> str:
        text = MESSAGES[key][self.lang]
        return text.format(**values) if values else text

    def status(self, code: str | None) -> str:
        """`01 Đã đến` (vi), `01 Đã đến — arrived` (en); an unknown code as it is."""
        if not code:
            return "—"
        name = STATUS_NAMES.get(code)
        if name is None:
            return code
        return f"{code} {name[0]}" if self.lang == "vi" else f"{code} {name[0]} — {name[1]}"

    def pick(self, vi: str, en: str) -> str:
        """A label that comes with its data in both languages (a report's tables and
        columns, made by broker.views.report for the CLI, the exports and this page)."""
        return vi if self.lang == "vi" else en

    def check(self, name: str) -> str:
        """A readiness check's name (as /readyz reports it)."""
        key = f"check.{name}"
        return self(key) if key in MESSAGES else name

    def event(self, kind: str) -> str:
        """An audit event's type (broker.core.events.EventType)."""
        key = f"event.{kind}"
        return self(key) if key in MESSAGES else kind

    def level(self, level: str | None) -> str:
        if not level:
            return "—"
        name = LEVEL_NAMES.get(level.lower())
        if name is None or self.lang == "vi":
            return level
        return f"{name[0]} — {name[1]}"
