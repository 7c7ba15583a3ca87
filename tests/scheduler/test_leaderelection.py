"""Lease-based leader election against a real apiserver."""

from __future__ import annotations

import asyncio

from control.api.pb import coordination_pb2
from control.scheduler.leaderelection import LeaderElector
from tests.conftest import Cluster


def elector(c: Cluster, ident: str) -> LeaderElector:
    return LeaderElector(c.client, ident, lease_duration=1.0, renew_deadline=0.5,
                         retry_period=0.1)


async def test_one_leader_then_handover_on_release(cluster: Cluster) -> None:
    a, b = elector(cluster, "a"), elector(cluster, "b")
    a_done = asyncio.Event()
    led: list[str] = []

    async def work(name: str, until: asyncio.Event) -> None:
        led.append(name)
        await until.wait()

    ta = asyncio.create_task(a.run(lambda: work("a", a_done)))
    await asyncio.sleep(0.3)
    tb = asyncio.create_task(b.run(lambda: work("b", asyncio.Event())))
    await asyncio.sleep(0.5)
    assert led == ["a"] and a.is_leader and not b.is_leader
    lease = await cluster.client.get("leases", "flotilla-scheduler", "kube-system")
    assert lease.spec.holder_identity == "a"
    a_done.set()  # a finishes and releases: b takes over without waiting for expiry
    await ta
    for _ in range(50):
        if b.is_leader:
            break
        await asyncio.sleep(0.05)
    assert led == ["a", "b"]
    lease = await cluster.client.get("leases", "flotilla-scheduler", "kube-system")
    assert lease.spec.holder_identity == "b" and lease.spec.lease_transitions == 1
    tb.cancel()
    await asyncio.gather(tb, return_exceptions=True)


async def test_expired_lease_is_taken_over(cluster: Cluster) -> None:
    stale = coordination_pb2.Lease()
    stale.metadata.name, stale.metadata.namespace = "flotilla-scheduler", "kube-system"
    stale.spec.holder_identity = "ghost"
    stale.spec.lease_duration_seconds = 1
    stale.spec.renew_time.FromSeconds(1_000_000)  # long ago
    await cluster.client.create(stale)
    e = elector(cluster, "me")
    assert await e.try_acquire_or_renew()
    fresh = elector(cluster, "other")
    assert not await fresh.try_acquire_or_renew()  # held and renewed just now
