"""A minimal HTTP endpoint serving Prometheus' text exposition format at ``/metrics``.

Components keep their metrics in ``control.runtime.metrics`` registries, whose ``render()``
is the text format; this server only serves what its sources render at scrape time (one
source per component: the apiserver, the controllers and the scheduler of ``flotilla
server`` are three). One asyncio server: a scrape is a GET with no body, answered and
closed (HTTP/1.0 style), which is all Prometheus needs.

Concurrency: event loop only; sources are called on the loop and must be synchronous and
quick. ``start`` binds (port 0 = any free port) and returns the port; ``stop`` closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog

log = structlog.get_logger(__name__, component="metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_BYTES = 8192


class MetricsServer:
    def __init__(self, sources: Sequence[Callable[[], str]]) -> None:
        self.sources = list(sources)
        self._server: asyncio.Server | None = None

    def render(self) -> str:
        return "".join(src() for src in self.sources)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        log.info("metrics served", address=f"{host}:{bound}", path="/metrics")
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_REQUEST_BYTES:
                raise ValueError("request too large")
            method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method != "GET":
                status, body, ctype = "405 Method Not Allowed", "only GET\n", "text/plain"
            elif path.split("?", 1)[0] != "/metrics":
                status, body, ctype = "404 Not Found", "see /metrics\n", "text/plain"
            else:
                status, body, ctype = "200 OK", self.render(), CONTENT_TYPE
            data = body.encode()
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                         + data)
            await writer.drain()
        except (TimeoutError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ConnectionError):
            pass  # a broken or slow scraper: nothing to answer
        finally:
            writer.close()
