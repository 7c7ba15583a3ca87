"""The DNS server for real on loopback, asked with dnslib's client over UDP and TCP;
forwarding to a fake upstream (another server of ours on loopback) and to a silent one."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from control.dns.catalog import Endpoint, MemoryCatalog, Port, ServiceInfo
from control.dns.forward import Forwarder, upstreams_from_resolv_conf
from control.dns.resolver import Zone
from control.dns.server import DNSServer

TIMEOUT = 5.0


def cluster() -> MemoryCatalog:
    c = MemoryCatalog()
    c.add(ServiceInfo("default", "web", ("10.96.0.20",), ports=(Port("http", "TCP", 80),)))
    c.add(ServiceInfo("default", "ext", external_name="db.example.test"))
    c.add(ServiceInfo("big", "many", headless=True),
          [Endpoint(f"10.244.{i // 250}.{i % 250 + 1}") for i in range(100)])
    return c


async def start(server: DNSServer) -> asyncio.Task[None]:
    task = asyncio.create_task(server.run(), name="test-dns")
    await asyncio.wait_for(server.bound.wait(), TIMEOUT)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, TIMEOUT)


@pytest.fixture
async def upstream() -> AsyncIterator[DNSServer]:
    """A fake upstream resolver on loopback: its own zone, example.test."""
    other = MemoryCatalog()
    other.add(ServiceInfo("www", "site", ("192.0.2.80",)))
    srv = DNSServer(Zone("example.test"), other, None, host="127.0.0.1", port=0)
    task = await start(srv)
    try:
        yield srv
    finally:
        await stop(task)


@pytest.fixture
async def server(upstream: DNSServer) -> AsyncIterator[DNSServer]:
    srv = DNSServer(Zone("cluster.local"), cluster(),
                    Forwarder([("127.0.0.1", upstream.port)], timeout=1.0),
                    host="127.0.0.1", port=0)
    task = await start(srv)
    try:
        yield srv
    finally:
        await stop(task)


async def ask(server: DNSServer, name: str, qtype: str, *, tcp: bool = False,
              edns: bool = False) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    if edns:
        q.add_ar(EDNS0(udp_len=4096))
    raw = await asyncio.to_thread(q.send, server.host, server.port, tcp=tcp, timeout=TIMEOUT)
    reply = DNSRecord.parse(raw)
    assert reply.header.id == q.header.id
    return reply


def rdatas(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_cluster_answers(server: DNSServer, tcp: bool) -> None:
    r = await ask(server, "web.default.svc.cluster.local", "A", tcp=tcp)
    assert r.header.rcode == RCODE.NOERROR and r.header.aa
    assert rdatas(r) == ["10.96.0.20"] and r.rr[0].ttl == 5

    r = await ask(server, "_http._tcp.web.default.svc.cluster.local", "SRV", tcp=tcp)
    assert rdatas(r) == ["0 100 80 web.default.svc.cluster.local."]
    assert [str(rr.rdata) for rr in r.ar] == ["10.96.0.20"]

    r = await ask(server, "20.0.96.10.in-addr.arpa", "PTR", tcp=tcp)
    assert rdatas(r) == ["web.default.svc.cluster.local."]

    r = await ask(server, "ext.default.svc.cluster.local", "A", tcp=tcp)
    assert [QTYPE[rr.rtype] for rr in r.rr] == ["CNAME"]
    assert rdatas(r) == ["db.example.test."]

    r = await ask(server, "nope.default.svc.cluster.local", "A", tcp=tcp)
    assert r.header.rcode == RCODE.NXDOMAIN and not r.rr
    assert [QTYPE[rr.rtype] for rr in r.auth] == ["SOA"]

    r = await ask(server, "web.default.svc.cluster.local", "AAAA", tcp=tcp)  # NODATA
    assert r.header.rcode == RCODE.NOERROR and not r.rr
    assert [QTYPE[rr.rtype] for rr in r.auth] == ["SOA"]
    assert r.auth[0].rdata.times[-1] == 5  # negative-caching TTL


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_other_names_are_forwarded(server: DNSServer, tcp: bool) -> None:
    r = await ask(server, "site.www.svc.example.test", "A", tcp=tcp)
    assert r.header.rcode == RCODE.NOERROR
    assert rdatas(r) == ["192.0.2.80"]
    r = await ask(server, "gone.www.svc.example.test", "A", tcp=tcp)
    assert r.header.rcode == RCODE.NXDOMAIN


async def test_large_udp_answers_are_truncated_and_whole_over_tcp(server: DNSServer) -> None:
    r = await ask(server, "many.big.svc.cluster.local", "A")
    assert r.header.tc and not r.rr
    r = await ask(server, "many.big.svc.cluster.local", "A", edns=True)  # 4096 bytes fit
    assert not r.header.tc and len(r.rr) == 100
    r = await ask(server, "many.big.svc.cluster.local", "A", tcp=True)
    assert not r.header.tc and len(r.rr) == 100


async def test_a_silent_upstream_is_servfail_after_the_timeout() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        srv = DNSServer(Zone(), cluster(), Forwarder([silent.getsockname()], timeout=0.3),
                        host="127.0.0.1", port=0)
        task = await start(srv)
        try:
            r = await ask(srv, "example.org", "A")
            assert r.header.rcode == RCODE.SERVFAIL
            # the cluster's own names do not wait on the upstream
            r = await ask(srv, "web.default.svc.cluster.local", "A")
            assert rdatas(r) == ["10.96.0.20"]
        finally:
            await stop(task)
    finally:
        silent.close()


async def test_garbage_and_non_queries(server: DNSServer) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        # a header that reads, followed by junk: FORMERR with the query's id
        await loop.sock_sendto(sock, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff",
                               (server.host, server.port))
        data = await asyncio.wait_for(loop.sock_recv(sock, 512), TIMEOUT)
        reply = DNSRecord.parse(data)
        assert reply.header.id == 0x1234 and reply.header.rcode == RCODE.FORMERR
        # still serving
        r = await ask(server, "web.default.svc.cluster.local", "A")
        assert rdatas(r) == ["10.96.0.20"]
    finally:
        sock.close()


def test_upstreams_leave_out_the_server_itself() -> None:
    text = ("nameserver 10.96.0.10\nnameserver 192.0.2.53 # corp\nnameserver fe80::1%eth0\n"
            "nameserver bogus\nnameserver 192.0.2.53\n")
    assert upstreams_from_resolv_conf(text, exclude=["10.96.0.10"]) == [
        ("192.0.2.53", 53), ("fe80::1", 53)]


async def test_cached_answers_follow_catalog_changes() -> None:
    catalog = cluster()
    srv = DNSServer(Zone(), catalog, None, host="127.0.0.1", port=0)
    task = await start(srv)
    try:
        for _ in range(2):  # the second is a cache hit, with its own id
            r = await ask(srv, "new.default.svc.cluster.local", "A")
            assert r.header.rcode == RCODE.NXDOMAIN
        catalog.add(ServiceInfo("default", "new", ("10.96.0.99",)))
        r = await ask(srv, "new.default.svc.cluster.local", "A")
        assert rdatas(r) == ["10.96.0.99"]
        r = await ask(srv, "new.default.svc.cluster.local", "A", tcp=True)
        assert rdatas(r) == ["10.96.0.99"]
    finally:
        await stop(task)
