"""Typed keys of the console's application and requests."""

from aiohttp import web

from adapters.http_api.console.dead_letter_cache import DeadLetterCache
from adapters.http_api.console.sessions import Session, Sessions

SESSIONS = web.AppKey("console_sessions", Sessions)
DEAD_LETTERS = web.AppKey("console_dead_letters", DeadLetterCache)
SESSION = web.RequestKey("console_session", Session)
