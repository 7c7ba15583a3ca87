"""A loopback TCP relay a test can cut and heal: a partition between one client and a
server, with both processes still running.

``async with TcpRelay(target_host, target_port) as relay`` listens on 127.0.0.1 (an
ephemeral port, ``relay.address``); ``relay.cut()`` drops every relayed connection and
refuses new ones until ``relay.heal()``.

Concurrency contract: one event loop; every connection's pumps are tasks the relay owns
and cancels on cut and on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class TcpRelay:
    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.is_cut = False
        self.address = ""

    async def __aenter__(self) -> TcpRelay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop()
        if self._server is not None:
            await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every connection now; refuse new ones until heal()."""
        self.is_cut = True
        for w in list(self._writers):
            w.transport.abort()
        for t in list(self._pumps):
            t.cancel()

    def heal(self) -> None:
        self.is_cut = False

    async def _drop(self) -> None:
        self.cut()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pumps = [asyncio.create_task(self._pump(reader, up_writer)),
                 asyncio.create_task(self._pump(up_reader, writer))]
        self._pumps.update(pumps)
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._pumps.difference_update(pumps)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
