"""The agency-facing HTTP API (aiohttp)."""

from adapters.http_api.app import RUNTIME, build_app

__all__ = ["RUNTIME", "build_app"]
