"""The cluster DNS server: UDP and TCP on one address, cluster names answered from the
catalog (:mod:`control.dns.resolver`), every other name forwarded (:mod:`control.dns.forward`).

Wire format by dnslib. A UDP answer larger than the client's limit (512 bytes, or the
EDNS0 buffer size it advertised, at most 4096) is sent truncated (TC set, no records), so
the client asks again over TCP, where answers go whole (2-byte length framing, several
queries per connection, an idle connection closed after ``tcp_idle``). A malformed query is
FORMERR when its header can be read and dropped otherwise; an opcode other than QUERY is
NOTIMP; no upstream answering is SERVFAIL.

Concurrency contract: one event loop. :meth:`DNSServer.run` binds both sockets, serves
until cancelled and closes them, its forwarding tasks and its TCP connections before it
returns. A cluster name is answered synchronously in the datagram callback (no task per
query: that path is the hot one); only forwarded questions get a task, kept in a set and
cancelled at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from typing import Any

import structlog
from dnslib import (
    AAAA,
    CNAME,
    EDNS0,
    NS,
    OPCODE,
    PTR,
    QTYPE,
    RCODE,
    RR,
    SOA,
    SRV,
    TXT,
    A,
    DNSHeader,
    DNSRecord,
)

from control.dns.catalog import Catalog
from control.dns.forward import Forwarder
from control.dns.resolver import Answer, Record, SOAData, SRVData, Zone, resolve

log = structlog.get_logger(__name__)

CLASSIC_UDP_LIMIT = 512
MAX_UDP_LIMIT = 4096
OUR_EDNS_SIZE = 1232
# distinct questions whose answers are kept (the whole cache is dropped when full: the
# working set of a cluster's names is far smaller)
CACHE_ENTRIES = 10_000  # the DNS flag day 2020 size: no fragmentation on common paths


def _rdata(r: Record) -> Any:
    d = r.data
    if r.rtype == "A":
        return A(d)
    if r.rtype == "AAAA":
        return AAAA(d)
    if r.rtype == "CNAME":
        return CNAME(d)
    if r.rtype == "PTR":
        return PTR(d)
    if r.rtype == "NS":
        return NS(d)
    if r.rtype == "TXT":
        return TXT(d)
    if r.rtype == "SRV" and isinstance(d, SRVData):
        return SRV(d.priority, d.weight, d.port, d.target)
    if r.rtype == "SOA" and isinstance(d, SOAData):
        return SOA(d.mname, d.rname, (d.serial, d.refresh, d.retry, d.expire, d.minimum))
    raise ValueError(f"cannot encode a {r.rtype} record")


def _rr(r: Record) -> RR:
    return RR(r.name, getattr(QTYPE, r.rtype), ttl=r.ttl, rdata=_rdata(r))


def _udp_limit(query: DNSRecord) -> int:
    for rr in query.ar:
        if rr.rtype == QTYPE.OPT:
            return max(CLASSIC_UDP_LIMIT, min(int(rr.rclass), MAX_UDP_LIMIT))
    return CLASSIC_UDP_LIMIT


def _has_edns(query: DNSRecord) -> bool:
    return any(rr.rtype == QTYPE.OPT for rr in query.ar)


def _error_reply(data: bytes, rcode: int) -> bytes | None:
    """An answer carrying only ``rcode`` to a query whose 12-byte header at least reads
    (and is not itself an answer)."""
    if len(data) < 12:
        return None
    qid, flags = struct.unpack("!HH", data[:4])
    if flags & 0x8000:
        return None
    reply = DNSRecord(DNSHeader(id=qid, qr=1, ra=1, rd=(flags >> 8) & 1,
                                opcode=(flags >> 11) & 0xF, rcode=rcode))
    return bytes(reply.pack())


class DNSServer:
    """See the module docstring."""

    def __init__(self, zone: Zone, catalog: Catalog, forwarder: Forwarder | None, *,
                 host: str = "127.0.0.1", port: int = 53, tcp_idle: float = 10.0,
                 cache_entries: int = CACHE_ENTRIES) -> None:
        self.zone = zone
        self.catalog = catalog
        self.forwarder = forwarder
        self.host = host
        self.port = port
        self.tcp_idle = tcp_idle
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.bound = asyncio.Event()
        # answers to cluster names by the query's bytes after its id, valid for one catalog
        # generation (the names' records cannot change within it)
        self._cache: dict[tuple[bool, bytes], bytes] = {}
        self._cache_generation = -1
        self.cache_entries = cache_entries

    # -- answering ------------------------------------------------------------------------

    def local_answer(self, data: bytes) -> tuple[bytes | None, DNSRecord | None]:
        """(the answer, None) for what is answered here, or (None, the parsed query) for a
        question to forward. (None, None): drop it."""
        try:
            query = DNSRecord.parse(data)
        except Exception:  # dnslib raises DNSError and others on junk
            return _error_reply(data, RCODE.FORMERR), None
        if query.header.qr:
            return None, None  # an answer sent to us: never reply to replies
        if query.header.opcode != OPCODE.QUERY:
            return self._reply(query, RCODE.NOTIMP), None
        if len(query.questions) != 1:
            return self._reply(query, RCODE.FORMERR), None
        q = query.q
        answer = resolve(str(q.qname), QTYPE.get(q.qtype, str(q.qtype)), self.zone,
                         self.catalog)
        if answer is None:
            return None, query
        return self._encode(query, answer), None

    def _reply(self, query: DNSRecord, rcode: int) -> bytes:
        reply = query.reply(ra=1)
        reply.header.rcode = rcode
        return bytes(reply.pack())

    def _encode(self, query: DNSRecord, answer: Answer) -> bytes:
        reply = query.reply(ra=1)
        reply.header.aa = 1
        reply.header.rcode = getattr(RCODE, answer.rcode)
        for r in answer.answer:
            reply.add_answer(_rr(r))
        for r in answer.authority:
            reply.add_auth(_rr(r))
        for r in answer.additional:
            reply.add_ar(_rr(r))
        if _has_edns(query):
            reply.add_ar(EDNS0(udp_len=OUR_EDNS_SIZE))
        return bytes(reply.pack())

    async def answer(self, data: bytes, *, tcp: bool) -> bytes | None:
        """The full answer to one query (forwarding when needed), before UDP truncation."""
        reply, query = self.cached_answer(data, tcp=True)
        if query is None:
            return reply
        if self.forwarder is None or not self.forwarder.upstreams:
            return self._reply(query, RCODE.SERVFAIL)
        upstream = await self.forwarder.forward(data, tcp=tcp)
        return upstream if upstream is not None else self._reply(query, RCODE.SERVFAIL)

    @staticmethod
    def fit_udp(data: bytes, reply: bytes) -> bytes:
        """``reply`` within the client's UDP limit, else truncated (TC, no records)."""
        if len(reply) <= CLASSIC_UDP_LIMIT:
            return reply
        try:
            limit = _udp_limit(DNSRecord.parse(data))
        except Exception:
            limit = CLASSIC_UDP_LIMIT
        if len(reply) <= limit:
            return reply
        parsed = DNSRecord.parse(reply)
        short = parsed.truncate()
        short.header.aa = parsed.header.aa
        return bytes(short.pack())

    # -- serving --------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UDP(self), local_addr=(self.host, self.port), reuse_port=False)
        self._udp = transport
        try:
            if self.port == 0:
                self.port = transport.get_extra_info("sockname")[1]
            self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port)
            log.info("cluster DNS serving", address=f"{self.host}:{self.port}",
                     zone=self.zone.origin,
                     upstreams=[f"{h}:{p}" for h, p in
                                (self.forwarder.upstreams if self.forwarder else [])])
            self.bound.set()
            await asyncio.Event().wait()
        finally:
            transport.close()
            if self._tcp is not None:
                self._tcp.close()
            for w in list(self._writers):
                w.close()
            for t in list(self._tasks):
                t.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=5)
            if self._tcp is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._tcp.wait_closed(), 5)
            self.bound.clear()

    def _spawn(self, coro_fn: Callable[[], Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro_fn(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("dns query task failed", task=task.get_name(),
                        error=repr(task.exception()))

    def cached_answer(self, data: bytes, *, tcp: bool) -> tuple[bytes | None, DNSRecord | None]:
        """:meth:`local_answer` (fitted to UDP unless ``tcp``) through the answer cache: a
        repeated question is a dictionary look-up and the client's id spliced in."""
        generation = self.catalog.generation
        if generation != self._cache_generation:
            self._cache.clear()
            self._cache_generation = generation
        key = (tcp, data[2:])
        hit = self._cache.get(key)
        if hit is not None:
            return data[:2] + hit, None
        reply, query = self.local_answer(data)
        if reply is not None and not tcp:
            reply = self.fit_udp(data, reply)
        if reply is not None and len(data) >= 12 and self.cache_entries:
            if len(self._cache) >= self.cache_entries:
                self._cache.clear()
            self._cache[key] = reply[2:]
        return reply, query

    def _udp_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        reply, query = self.cached_answer(data, tcp=False)
        transport = self._udp
        if transport is None:
            return
        if query is None:
            if reply is not None:
                transport.sendto(reply, addr)
            return

        async def forward() -> None:
            full = await self.answer(data, tcp=False)
            if full is not None and not transport.is_closing():
                transport.sendto(self.fit_udp(data, full), addr)

        self._spawn(forward, f"dns-forward-udp-{addr[0]}:{addr[1]}")

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle)
                    (size,) = struct.unpack("!H", head)
                    data = await asyncio.wait_for(reader.readexactly(size), self.tcp_idle)
                except (TimeoutError, asyncio.IncompleteReadError, OSError):
                    return
                reply = await self.answer(data, tcp=True)
                if reply is None:
                    return
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.server._udp_datagram(data, addr)
        except Exception:  # a bad query must never stop the socket
            log.exception("answering a DNS query failed", client=f"{addr[0]}:{addr[1]}")
