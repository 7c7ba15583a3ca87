"""Cluster DNS: queries/s and latency (p50/p99) of Flotilla's DNS server vs a bare dnslib
responder (parse, one fixed A record, pack) on loopback, over UDP. Flotilla runs twice: as
served (its answer cache on: after the first round every name is a hit) and with the cache
off (every query parsed, resolved and encoded: the cost of a name seen for the first time or
just after a Service changed).

Each responder runs alone in a child process (one core); the load generator runs in this
process with a fixed window of outstanding queries (``--window``), each a random Service
name of ``--services`` (Flotilla answers it from its catalog, the bare responder answers
anything with the same record). A query lost for a second is counted and replaced. Phases
alternate (``--repeat``) and medians are reported, with the ratio Flotilla / bare.

    .venv/bin/python -m bench.dns_bench [--duration 5] [--repeat 3] [--window 16]

Traffic goes to 127.0.0.1 only; nothing is forwarded (the names are all the cluster's).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

from dnslib import QTYPE, RR, A, DNSRecord

DOMAIN = "cluster.local"


def _names(n: int) -> list[str]:
    return [f"svc-{i}.ns-{i % 20}.svc.{DOMAIN}" for i in range(n)]


def _flotilla_nocache(port_q: Any, services: int) -> None:
    _flotilla(port_q, services, cache=False)


def _flotilla(port_q: Any, services: int, cache: bool = True) -> None:
    from control.dns.catalog import MemoryCatalog, Port, ServiceInfo
    from control.dns.resolver import Zone
    from control.dns.server import DNSServer

    catalog = MemoryCatalog()
    for i in range(services):
        catalog.add(ServiceInfo(f"ns-{i % 20}", f"svc-{i}",
                                (f"10.96.{i // 250}.{i % 250 + 1}",),
                                ports=(Port("http", "TCP", 80),)))

    async def main() -> None:
        server = DNSServer(Zone(DOMAIN), catalog, None, host="127.0.0.1", port=0,
                           cache_entries=10_000 if cache else 0)
        task = asyncio.create_task(server.run(), name="bench-dns")
        await server.bound.wait()
        port_q.put(server.port)
        await task

    asyncio.run(main())


class _Bare(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        q = DNSRecord.parse(data)
        reply = q.reply()
        reply.add_answer(RR(q.q.qname, QTYPE.A, ttl=5, rdata=A("10.96.0.1")))
        self.transport.sendto(reply.pack(), addr)


def _bare(port_q: Any, services: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(_Bare,
                                                           local_addr=("127.0.0.1", 0))
        port_q.put(transport.get_extra_info("sockname")[1])
        await asyncio.Event().wait()

    asyncio.run(main())


class _Load(asyncio.DatagramProtocol):
    def __init__(self, queries: list[bytes], window: int, deadline: float) -> None:
        self.queries = queries
        self.window = window
        self.deadline = deadline
        self.outstanding: dict[bytes, float] = {}
        self.latencies: list[float] = []
        self.lost = 0
        self.done = asyncio.get_running_loop().create_future()
        self._next = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        for _ in range(self.window):
            self._send()

    def _send(self) -> None:
        if time.perf_counter() >= self.deadline:
            if not self.outstanding and not self.done.done():
                self.done.set_result(None)
            return
        q = self.queries[self._next % len(self.queries)]
        self._next += 1
        # a fresh id per query so late answers to lost ones are not miscounted
        qid = (self._next & 0xFFFF).to_bytes(2, "big")
        self.outstanding[qid] = time.perf_counter()
        self.transport.sendto(qid + q[2:])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        t0 = self.outstanding.pop(data[:2], None)
        if t0 is not None:
            self.latencies.append(time.perf_counter() - t0)
        self._send()

    def reap(self) -> None:
        now = time.perf_counter()
        for qid, t0 in list(self.outstanding.items()):
            if now - t0 > 1.0:
                del self.outstanding[qid]
                self.lost += 1
                self._send()
        if now >= self.deadline and not self.outstanding and not self.done.done():
            self.done.set_result(None)


async def _run_load(port: int, queries: list[bytes], window: int,
                    duration: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    proto_ref: list[_Load] = []

    def factory() -> _Load:
        p = _Load(queries, window, start + duration)
        proto_ref.append(p)
        return p

    transport, _ = await loop.create_datagram_endpoint(factory,
                                                       remote_addr=("127.0.0.1", port))
    proto = proto_ref[0]
    try:
        while not proto.done.done():
            await asyncio.wait([proto.done], timeout=0.2)
            proto.reap()
            if time.perf_counter() > start + duration + 5:
                break
    finally:
        transport.close()
    elapsed = time.perf_counter() - start
    lat = sorted(proto.latencies)
    return {"qps": len(lat) / elapsed,
            "p50_ms": 1000 * lat[len(lat) // 2] if lat else float("nan"),
            "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else float("nan"),
            "lost": proto.lost}


def _start(target: Callable[[Any, int], None], services: int) -> tuple[Any, int]:
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=target, args=(q, services), daemon=True)
    proc.start()
    return proc, int(q.get(timeout=30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--services", type=int, default=1000)
    args = ap.parse_args()
    rng = random.Random(1)
    names = _names(args.services)
    rng.shuffle(names)
    queries = [bytes(DNSRecord.question(n, "A").pack()) for n in names]
    procs = {"flotilla": _start(_flotilla, args.services),
             "no-cache": _start(_flotilla_nocache, args.services), "bare": _start(_bare, 0)}
    # a first query checks both answer
    for label, (_, port) in procs.items():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(queries[0], ("127.0.0.1", port))
            reply = DNSRecord.parse(s.recv(4096))
            assert reply.rr, f"{label} did not answer {names[0]}"
    results: dict[str, list[dict[str, float]]] = {k: [] for k in procs}
    try:
        for _ in range(args.repeat):
            for label, (_, port) in procs.items():
                results[label].append(asyncio.run(
                    _run_load(port, queries, args.window, args.duration)))
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.join(5)
    med = {label: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
           for label, runs in results.items()}
    print(f"window {args.window}, {args.services} Services, {args.duration:.0f} s x "
          f"{args.repeat} (medians)")
    print(f"{'server':<10} {'queries/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'lost':>6}")
    for label, m in med.items():
        print(f"{label:<10} {m['qps']:>10.0f} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} "
              f"{m['lost']:>6.0f}")
    b = med["bare"]
    for label in ("flotilla", "no-cache"):
        f = med[label]
        print(f"ratio {label}/bare: queries/s {f['qps'] / b['qps']:.2f}, "
              f"p99 {f['p99_ms'] / b['p99_ms']:.2f}")


if __name__ == "__main__":
    main()
