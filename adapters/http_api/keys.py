"""Typed keys of the aiohttp application."""

from aiohttp import web

from adapters.http_api.idempotency import IdempotencyCache
from broker.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
IDEMPOTENCY = web.AppKey("idempotency", IdempotencyCache)
