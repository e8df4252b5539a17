"""structlog configuration: JSON lines to files and pipes, readable on a terminal.

Library loggers (aiokafka, aiohttp) go through the same processors via the
standard library's logging, so every line has one shape. Context (request id,
message id, trace id) is bound with structlog.contextvars and travels into
worker threads with asyncio.to_thread.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError

from broker.config import LoggingSettings

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(settings: LoggingSettings, *, stream: TextIO | None = None) -> None:
    """Configure structlog and stdlib logging once, at process start."""
    level = _LEVELS[settings.level]
    out: TextIO
    if settings.file:
        out = open(settings.file, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
    else:
        out = stream or sys.stderr
    use_console = settings.format == "console" or (
        settings.format == "auto" and not settings.file and out.isatty()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if use_console
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([] if use_console else [structlog.processors.format_exc_info]),
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Chatty libraries: their warnings matter, their info lines do not.
    for name in ("aiokafka", "aiohttp.access", "kafka"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server.filters):
        server.addFilter(MalformedRequestFilter())


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a malformed request (answered 400) as an error with a traceback:
    the client's mistake, not the broker's. Keep one warning line without it."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and (exc.code or 0) < 500:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = f"malformed request refused ({exc.code}): {exc.message}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True
