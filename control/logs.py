"""Logging set-up shared by every Flotilla process: structlog over the standard library.

JSON lines when stderr is not a terminal (or ``--log-format json``), readable coloured lines
on a terminal (``--log-format console``). Components bind ``component=...`` and object keys
themselves: ``structlog.get_logger(component="apiserver")``.

Call :func:`configure` once at process start (the CLI does); it is idempotent.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["auto", "json", "console"]
LEVELS = ("debug", "info", "warning", "error", "critical")


def configure(level: str = "info", fmt: LogFormat = "auto") -> None:
    """Route structlog and stdlib logging to stderr at ``level`` in ``fmt``."""
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    numeric = getattr(logging, level.upper())
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        # plain tracebacks: a rich one (locals included) takes a second or more to render,
        # on the event loop of the component that logged it
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if fmt == "json":
        shared.append(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # grpc and asyncio log through the standard library; keep them at warning and above
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)
