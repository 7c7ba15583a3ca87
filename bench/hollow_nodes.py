"""Hollow nodes: register N Node objects quickly, optionally heartbeat their Leases.

A hollow node is only what the control plane sees of a machine: a Node with capacity,
allocatable, labels (hostname, a zone out of ``zones``) and a Ready condition, plus (with
``--heartbeat``) a Lease in kube-node-lease renewed every 10 s, as an agent does. No pods
run; the scheduler benchmark uses them as targets. All nodes live in this one process and
are created through the API with ``concurrency`` requests in flight.

Run standalone against a server::

    .venv/bin/python -m bench.hollow_nodes --server 127.0.0.1:6443 --nodes 1000 [--heartbeat]

Concurrency contract: one event loop; ``register`` fans out with a semaphore; ``heartbeat``
runs until cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from control.api import errors
from control.api.pb import coordination_pb2, core_pb2
from control.client import config as client_config
from control.client.channel import open_channel
from control.client.client import ApiClient

ZONE_LABEL = "topology.kubernetes.io/zone"
LEASE_NAMESPACE = "kube-node-lease"


def hollow_node(name: str, zone: str, cpu: str = "32", memory: str = "256Gi",
                pods: str = "110") -> core_pb2.Node:
    n = core_pb2.Node()
    n.metadata.name = name
    n.metadata.labels.update({"kubernetes.io/hostname": name, ZONE_LABEL: zone,
                              "kubernetes.io/os": "linux", "flotilla.dev/hollow": "true"})
    for k, v in (("cpu", cpu), ("memory", memory), ("pods", pods),
                 ("ephemeral-storage", "100Gi")):
        n.status.capacity[k].string = v
        n.status.allocatable[k].string = v
    n.status.conditions.add(type="Ready", status="True", reason="KubeletReady",
                            message="hollow node")
    return n


async def register(client: ApiClient, count: int, *, prefix: str = "hollow", zones: int = 10,
                   concurrency: int = 64, **node_kw: str) -> list[str]:
    """Create ``count`` nodes (AlreadyExists is fine: a re-run reuses them)."""
    sem = asyncio.Semaphore(concurrency)
    names = [f"{prefix}-{i:05d}" for i in range(count)]

    async def one(i: int, name: str) -> None:
        async with sem:
            try:
                await client.create(hollow_node(name, f"zone-{i % zones}", **node_kw))
            except errors.AlreadyExists:
                pass

    await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))
    return names


async def heartbeat(client: ApiClient, names: list[str], period: float = 10.0,
                    concurrency: int = 16) -> None:
    """Renew one Lease per node every ``period`` seconds, spread over the period."""
    sem = asyncio.Semaphore(concurrency)
    leases: dict[str, coordination_pb2.Lease] = {}

    async def renew(name: str) -> None:
        async with sem:
            lease = leases.get(name)
            now_ns = time.time_ns()
            try:
                if lease is None:
                    lease = coordination_pb2.Lease()
                    lease.metadata.name = name
                    lease.metadata.namespace = LEASE_NAMESPACE
                    lease.spec.holder_identity = name
                    lease.spec.lease_duration_seconds = 40
                    lease.spec.renew_time.FromNanoseconds(now_ns)
                    try:
                        leases[name] = await client.create(lease)
                    except errors.AlreadyExists:
                        leases[name] = await client.get("leases", name, LEASE_NAMESPACE)
                    return
                lease.spec.renew_time.FromNanoseconds(now_ns)
                leases[name] = await client.update(lease)
            except errors.Conflict:
                leases.pop(name, None)

    inflight: set[asyncio.Task[None]] = set()
    try:
        while True:
            start = time.monotonic()
            step = period / max(len(names), 1)
            for i, name in enumerate(names):
                await asyncio.sleep(max(0.0, start + i * step - time.monotonic()))
                t = asyncio.create_task(renew(name), name=f"lease/{name}")
                inflight.add(t)
                t.add_done_callback(inflight.discard)
            await asyncio.sleep(max(0.0, start + period - time.monotonic()))
    finally:
        for t in inflight:
            t.cancel()
        await asyncio.gather(*inflight, return_exceptions=True)


async def _main(args: argparse.Namespace) -> None:
    try:
        cfg = client_config.load(args.server, args.config)
    except client_config.ConfigError as e:
        raise SystemExit(str(e)) from None
    channel = open_channel(cfg.server, cfg.credentials)
    client = ApiClient(channel, cfg.server)
    t0 = time.perf_counter()
    names = await register(client, args.nodes, prefix=args.prefix, zones=args.zones,
                           concurrency=args.concurrency)
    dt = time.perf_counter() - t0
    print(f"registered {len(names)} nodes in {dt:.2f} s ({len(names) / dt:.0f} nodes/s)")
    try:
        if args.heartbeat:
            print("heartbeating every 10 s; Ctrl-C to stop")
            await heartbeat(client, names)
    finally:
        await channel.close(None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server", default=None, help="HOST:PORT (default: the config's)")
    p.add_argument("--config", default=None,
                   help="client config with admin credentials (default: admin.conf)")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--zones", type=int, default=10)
    p.add_argument("--prefix", default="hollow")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--heartbeat", action="store_true")
    asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    main()
