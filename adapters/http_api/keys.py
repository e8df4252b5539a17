"""Typed keys of the aiohttp application."""

from aiohttp import web

from broker.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
