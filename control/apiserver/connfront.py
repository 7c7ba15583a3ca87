"""The API port's connection gate: at most ``max_connections`` connections, at most
``per_source`` from one source address, and ``reserved`` of them kept for the control
plane's own addresses, decided when a connection is accepted, before a byte of it is read.

gRPC (grpcio) offers a total bound only (``grpc.max_allowed_incoming_connections``): no
per-address bound, no way to refuse or admit one connection, and no way to hand it an
accepted socket. So when a per-source bound is asked for, :class:`ConnectionFront` owns the
API's listening address: it accepts, asks :class:`ConnectionGate`, closes a refused
connection at once, and splices an admitted one byte for byte to the gRPC server, which then
listens on a Unix socket in the data directory. TLS stays end to end (the front never sees
plaintext; client certificates authenticate as before); the cost is one more copy of every
byte in this process (measured in docs/benchmarks.md).

Privileged sources are the control plane's: loopback (in-process components, an agent on
this machine, admins on the machine) and every Node's InternalIP. They are not bound per
source (one address hosts many components) and may use the reserved connections, which
others may not: a flood from other addresses cannot lock the nodes and the control plane
out. An address that is neither (an admin's laptop) shares the unreserved room, one
``per_source`` share at most each.

Concurrency: event-loop only. The gate is synchronous; each admitted connection is two
copy tasks owned by the front, cancelled by ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(component="connfront")

_CHUNK = 256 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int  # in total
    per_source: int  # from one unprivileged address
    reserved: int  # of max_connections, only for privileged addresses

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.per_source < 1:
            raise ValueError("connection limits must be at least 1")
        if not 0 <= self.reserved < self.max_connections:
            raise ValueError("the reserved connections must be fewer than the maximum")


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


class ConnectionGate:
    """Counts connections per source and decides; see the module docstring."""

    def __init__(self, limits: ConnectionLimits,
                 privileged: Callable[[str], bool] = is_loopback) -> None:
        self.limits = limits
        self.privileged = privileged
        self.total = 0
        self.unprivileged = 0
        self.by_source: dict[str, int] = {}
        self.refused = 0

    def admit(self, source: str) -> str | None:
        """Count a connection from ``source`` in; or say why it is refused."""
        lim = self.limits
        privileged = self.privileged(source)
        if self.total >= lim.max_connections:
            reason: str | None = "the server's connection limit is reached"
        elif privileged:
            reason = None
        elif self.unprivileged >= lim.max_connections - lim.reserved:
            reason = "the connections not kept for the control plane are all taken"
        elif self.by_source.get(source, 0) >= lim.per_source:
            reason = f"{lim.per_source} connections from {source} already"
        else:
            reason = None
        if reason is not None:
            self.refused += 1
            return reason
        self.total += 1
        self.by_source[source] = self.by_source.get(source, 0) + 1
        if not privileged:
            self.unprivileged += 1
        return None

    def release(self, source: str) -> None:
        self.total -= 1
        left = self.by_source.get(source, 1) - 1
        if left:
            self.by_source[source] = left
        else:
            self.by_source.pop(source, None)
        if not self.privileged(source):
            self.unprivileged -= 1


class NodeAddresses:
    """``privileged`` for a gate: loopback, or the InternalIP of a Node in ``nodes()``
    (recomputed only when ``version()`` changes)."""

    def __init__(self, nodes: Callable[[], Iterable[object]],
                 version: Callable[[], object]) -> None:
        self._nodes = nodes
        self._version = version
        self._seen: object = None
        self._addresses: frozenset[str] = frozenset()

    def __call__(self, source: str) -> bool:
        if is_loopback(source):
            return True
        v = self._version()
        if v != self._seen:
            self._addresses = frozenset(
                a.address for n in self._nodes()
                for a in n.status.addresses if a.type == "InternalIP")  # type: ignore[attr-defined]
            self._seen = v
        return source.split("%")[0] in self._addresses


class ConnectionFront:
    """Listens on ``host:port`` and splices admitted connections to the Unix socket
    ``backend`` (where the gRPC server listens)."""

    def __init__(self, gate: ConnectionGate, backend: Path) -> None:
        self.gate = gate
        self.backend = backend
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (``port`` 0: a free one)."""
        self._server = await asyncio.start_server(self._accepted, host or None, port,
                                                  reuse_address=True, limit=_CHUNK)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accepted(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if peer else ""
        reason = self.gate.admit(source)
        if reason is not None:
            _reset(writer)
            log.debug("connection refused", source=source, reason=reason)
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                up_r, up_w = await asyncio.open_unix_connection(str(self.backend), limit=_CHUNK)
            except OSError as e:
                log.warning("the API server behind the front is unreachable", error=str(e))
                _reset(writer)
                return
            await _splice(reader, writer, up_r, up_w)
        finally:
            self.gate.release(source)
            self._tasks.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)


async def _splice(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                  up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> None:
    """Copy both ways until both directions ended (or one side broke)."""

    async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(_CHUNK):
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            dst.close()

    try:
        await asyncio.gather(copy(client_r, up_w), copy(up_r, client_w))
    finally:
        for w in (client_w, up_w):
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close at once, with a RST rather than a graceful FIN (no TIME_WAIT kept here)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


__all__ = ["ConnectionFront", "ConnectionGate", "ConnectionLimits", "NodeAddresses",
           "is_loopback"]
