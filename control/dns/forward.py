"""Forwarding the questions that are not the cluster's to the machine's resolvers.

:func:`upstreams_from_resolv_conf` reads the nameservers of a resolv.conf, leaving out the
DNS server's own addresses (forwarding to itself would loop). :class:`Forwarder` relays a
query's raw bytes to each upstream in turn: over UDP for a UDP client (a truncated answer is
passed on as is, so the client retries over TCP), over TCP for a TCP client, each try
bounded by ``timeout``. No upstream answering is SERVFAIL, decided by the server.

Concurrency contract: one event loop; every call opens its own socket and closes it before
returning, whatever happens, so concurrent forwards share nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import Iterable, Sequence

import structlog

log = structlog.get_logger(__name__)

DEFAULT_TIMEOUT = 2.0
MAX_UDP_ANSWER = 65535


def upstreams_from_resolv_conf(text: str, exclude: Iterable[str] = (),
                               port: int = 53) -> list[tuple[str, int]]:
    """The resolv.conf's nameservers as (address, port), without those in ``exclude``."""
    skip = {_norm(a) for a in exclude}
    out = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            addr = fields[1].split("%", 1)[0]  # drop an IPv6 zone
            try:
                norm = _norm(addr)
            except ValueError:
                continue
            if norm not in skip and (norm, port) not in out:
                out.append((norm, port))
    return out


def _norm(addr: str) -> str:
    return str(ipaddress.ip_address(addr))


class _OneAnswer(asyncio.DatagramProtocol):
    def __init__(self, query_id: bytes) -> None:
        self.query_id = query_id
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # an answer to another query (a late one to an earlier socket user) is ignored
        if data[:2] == self.query_id and not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


class Forwarder:
    def __init__(self, upstreams: Sequence[tuple[str, int]],
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.upstreams = list(upstreams)
        self.timeout = timeout

    async def forward(self, query: bytes, *, tcp: bool = False) -> bytes | None:
        """The first upstream answer to ``query``, or None when none answered in time."""
        for host, port in self.upstreams:
            try:
                if tcp:
                    return await asyncio.wait_for(self._tcp(query, host, port), self.timeout)
                return await asyncio.wait_for(self._udp(query, host, port), self.timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
                log.debug("upstream did not answer", upstream=f"{host}:{port}",
                          error=str(e) or type(e).__name__)
        return None

    async def _udp(self, query: bytes, host: str, port: int) -> bytes:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(
            lambda: _OneAnswer(query[:2]), remote_addr=(host, port))
        try:
            transport.sendto(query)
            return await proto.answer
        finally:
            transport.close()

    async def _tcp(self, query: bytes, host: str, port: int) -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(struct.pack("!H", len(query)) + query)
            await writer.drain()
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(size)
        finally:
            writer.close()
